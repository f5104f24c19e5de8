"""``haproxy-kill`` (FAILURES F14, scale-out): the terminals reach two switches through
ONE address, HAProxy in TCP mode (loadtest/haproxy.py, docs/SCALING.md), each switch
health-checked by a real echo test.  At ``at`` (30 %) switch 0 gets ``kill -9``; the
fault window lasts until HAProxy's stats socket says it is DOWN.  Its terminals' open
requests are cut (link down: a reversal), they reconnect to the same address and
HAProxy hands them to switch 1.  ``down_s`` (4 s) after the mark-down switch 0 is
started again on its port and must come back UP (its echo answered again).

Promised: HAProxy marks the killed switch DOWN within 5 s; the terminals it touched
get approvals again within 5 s of the kill; every terminal is approved after the
mark-down, on the one address; switch 1 takes new connections meanwhile; the
restarted switch is UP again within 5 s.  PostgreSQL (the deployment's database),
the harness's own cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from loadtest.haproxy import Haproxy, ServerState, switch_env, unavailable
from terminal_sim.link import TcpLink

from ..config import RunConfig
from ..context import Acceptance, FaultContext
from ..history import Exchange
from ..metrics import Figures
from . import Scenario, register

MARK_DOWN_LIMIT_S = 5.0
RESUME_LIMIT_S = 5.0
BACK_UP_LIMIT_S = 5.0
#: How long to wait for a state HAProxy should reach well within the limits above.
WAIT_S = 15.0
KILLED, SURVIVOR = "switch-0", "switch-1"


@dataclass
class _Seen:
    """What the stats socket and the run clock said at each step (run seconds)."""

    kill_s: float | None = None
    down_after_s: float | None = None
    down_at_s: float | None = None
    restart_s: float | None = None
    up_after_s: float | None = None
    at_kill: dict[str, ServerState] | None = None
    at_restart: dict[str, ServerState] | None = None
    at_end: dict[str, ServerState] | None = None


@register
class HaproxyKill(Scenario):
    name = "haproxy-kill"
    summary = ("the terminals through HAProxy (one address) to 2 switches; kill -9 switch 0, "
               "HAProxy marks it DOWN, switch 1 takes over; restarted down_s (4 s) later")
    engines = ("postgresql",)
    ci_params = {"down_s": "3"}

    def __init__(self) -> None:
        self.lb: Haproxy | None = None
        self.seen = _Seen()

    def configure(self, cfg: RunConfig) -> RunConfig:
        return replace(cfg, switches=2)

    def unsupported(self, cfg: RunConfig) -> str | None:
        return super().unsupported(cfg) or unavailable()

    def before_switches(self, ctx: FaultContext) -> None:
        ctx.switches.extra_env.update(switch_env())

    def setup(self, ctx: FaultContext) -> None:
        lb = ctx.stack.enter_context(Haproxy(ctx.switches.ports, ctx.switches.log_dir))
        self.lb = lb
        if not lb.wait_all_up(WAIT_S):
            raise RuntimeError(f"not every switch passed HAProxy's echo check: {lb.servers()}")
        ctx.mark("haproxy up", f"pid {lb.pid}, {lb.address} -> "
                 + ", ".join(f"{b.name} :{b.port}" for b in lb.backends))
        # every terminal, whichever switch it logged on to, now has the one address
        ctx.connect = lambda _tid, _index: TcpLink("127.0.0.1", lb.port)

    def inject(self, ctx: FaultContext) -> None:
        lb, seen = self.lb, self.seen
        assert lb is not None
        ctx.wait_until(self.fault_at_s(ctx))
        seen.at_kill = lb.servers()
        with ctx.fault(f"{KILLED} killed"):
            pid = ctx.switches.slots[0].pid
            ctx.switches.kill(0)
            seen.kill_s = ctx.now_s()
            ctx.mark(f"kill -9 {KILLED}", f"pid {pid}")
            seen.down_after_s = lb.wait_for(KILLED, "DOWN", WAIT_S, abort=ctx.abort)
            seen.down_at_s = ctx.now_s()
            state = lb.servers().get(KILLED)
            ctx.mark(f"haproxy: {KILLED} DOWN" if seen.down_after_s is not None else
                     f"haproxy: {KILLED} still not DOWN after {WAIT_S:g} s",
                     f"{state.status} / {state.check_status}" if state else "")
        ctx.sleep(ctx.cfg.param_s("down_s", 4.0))
        seen.at_restart = lb.servers()
        ctx.switches.start(0)
        seen.restart_s = ctx.now_s()
        ctx.mark(f"{KILLED} started again", f"pid {ctx.switches.slots[0].pid}")
        seen.up_after_s = lb.wait_for(KILLED, "UP", WAIT_S, abort=ctx.abort)
        ctx.mark(f"haproxy: {KILLED} UP" if seen.up_after_s is not None else
                 f"haproxy: {KILLED} not UP after {WAIT_S:g} s")
        ctx.wait_until(ctx.load_end_s)
        seen.at_end = lb.servers()

    def judge(self, cfg: RunConfig, fig: Figures,
              exchanges: Sequence[Exchange]) -> list[Acceptance]:
        seen = self.seen
        checks = [Acceptance(f"HAProxy marks the killed switch DOWN within "
                             f"{MARK_DOWN_LIMIT_S:g} s (stats socket)",
                             seen.down_after_s is not None
                             and seen.down_after_s <= MARK_DOWN_LIMIT_S,
                             _s(seen.down_after_s))]
        window = fig.windows[0] if fig.windows else None
        resumed = None
        if window is not None and window.recovery_s is not None:
            resumed = window.window.end_s - window.window.start_s + window.recovery_s
        checks.append(Acceptance(f"approvals again at the terminals it touched within "
                                 f"{RESUME_LIMIT_S:g} s of the kill",
                                 resumed is not None and resumed <= RESUME_LIMIT_S,
                                 _s(resumed) + (f" ({window.terminals_touched} terminals "
                                                "touched)" if window else "")))
        tids = {e.tid for e in exchanges if e.op == "purchase"}
        after = seen.down_at_s if seen.down_at_s is not None else float("inf")
        approved_after = {e.tid for e in exchanges
                          if e.op == "purchase" and e.approved and e.sent_s >= after}
        missing = sorted(tids - approved_after)
        checks.append(Acceptance("every terminal approved after the mark-down, on the one "
                                 "address", not missing and bool(tids),
                                 f"{len(approved_after)} of {len(tids)} terminals"
                                 + (f"; not: {', '.join(missing)}" if missing else "")))
        gained = _gained(seen.at_kill, seen.at_restart, SURVIVOR)
        checks.append(Acceptance(f"{SURVIVOR} takes new connections while {KILLED} is down",
                                 gained is not None and gained > 0,
                                 "-" if gained is None else f"{gained} new connections"))
        checks.append(Acceptance(f"the restarted switch UP again within {BACK_UP_LIMIT_S:g} s",
                                 seen.up_after_s is not None
                                 and seen.up_after_s <= BACK_UP_LIMIT_S,
                                 _s(seen.up_after_s)))
        return checks

    def report_section(self, cfg: RunConfig, fig: Figures,
                       exchanges: Sequence[Exchange]) -> list[str]:
        lb, seen = self.lb, self.seen
        lines = ["## HAProxy", ""]
        if lb is not None:
            lines += [f"One address for every terminal: `{lb.address}` (pid {lb.pid}); "
                      f"configuration `{lb.config_path.name}`, log `{lb.log_path.name}` in "
                      "the run directory.", ""]
        lines += ["| when | server | status | last check | sessions now | sessions in all |",
                  "|---|---|---|---|---|---|"]
        for label, states in (("at the kill", seen.at_kill), ("at the restart", seen.at_restart),
                              ("at the end of the load", seen.at_end)):
            for state in (states or {}).values():
                lines.append(f"| {label} | {state.name} | {state.status} | "
                             f"{state.check_status} | {state.current} | {state.total} |")
        return lines

    def summary_lines(self) -> list[str]:
        seen = self.seen
        return [f"HAProxy: {KILLED} DOWN {_s(seen.down_after_s)} after the kill, UP "
                f"{_s(seen.up_after_s)} after its restart; {SURVIVOR} took "
                f"{_gained(seen.at_kill, seen.at_restart, SURVIVOR)} new connections"]


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def _gained(before: dict[str, ServerState] | None, after: dict[str, ServerState] | None,
            name: str) -> int | None:
    if not before or not after or name not in before or name not in after:
        return None
    return after[name].total - before[name].total
