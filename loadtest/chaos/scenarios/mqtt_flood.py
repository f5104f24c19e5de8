"""``mqtt-flood`` (HOST_SPEC §1 MQTT, back-pressure): 50 MQTT terminals on the harness's
own Mosquitto send 2,000 purchases in all as fast as the broker takes them: a closed
loop, each terminal's next purchase as soon as the last was answered or given up (an
EDC has one request out at a time), no fault injected: the load is the fault.

The switch acknowledges a request (PUBACK) only when it has room for it (MQTT 5
Receive Maximum, ``BPNT_MQTT_MAX_INFLIGHT`` slots), so with QoS 1 the broker holds the
rest back; with ``--param qos=0`` (out of spec: terminals whose requests the broker
cannot hold back) a request that finds no place is shed by the switch: logged, not
answered; its terminal times out and its reversal settles it.  ``--param inflight=N``
sets the switch's slots (default: the switch's, 64); fewer slots than terminals is
what makes the back-pressure or the shedding bite.

Promised: all the purchases sent; every purchase answered, or (shed, lost) unanswered
and its reversal answered 00; the checker passes.  The report adds the throughput and
the requests the switch logged as shed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ..broker import unavailable
from ..config import RunConfig
from ..context import Acceptance, FaultContext
from ..history import NOT_SENT, PURCHASE, REVERSAL, Exchange
from ..metrics import Figures
from ..mqtt_fleet import MqttSetup, shed_requests, start_broker
from . import Scenario, register


@register
class MqttFlood(Scenario):
    name = "mqtt-flood"
    summary = ("50 MQTT terminals, 2,000 purchases back to back as fast as the broker takes "
               "them; qos=0 (out of spec) and inflight=N to make the switch shed")
    engines = ("sqlite",)
    full_settings = {"terminals": 50, "purchases": 2000, "duration_s": 240.0}
    ci_settings = {"terminals": 20, "purchases": 400, "duration_s": 90.0}

    def __init__(self) -> None:
        self.mqtt: MqttSetup | None = None
        self.ctx: FaultContext | None = None
        self.shed = 0
        self.answered = 0
        self.settled = 0
        self.unsettled: list[str] = []
        self.not_sent = 0
        self.elapsed_s = 0.0
        self.purchases = 0

    def unsupported(self, cfg: RunConfig) -> str | None:
        reason = super().unsupported(cfg) or unavailable()
        if reason is None and cfg.purchases is None:
            reason = "mqtt-flood is a closed loop: give --purchases N"
        if reason is None and cfg.params.get("qos", "1") not in ("0", "1"):
            reason = "--param qos=0 or qos=1"
        return reason

    def before_switches(self, ctx: FaultContext) -> None:
        self.ctx = ctx
        env = {}
        if "inflight" in ctx.cfg.params:
            env["BPNT_MQTT_MAX_INFLIGHT"] = str(int(ctx.cfg.params["inflight"]))
        self.mqtt = start_broker(ctx, request_qos=int(ctx.cfg.params.get("qos", "1")),
                                 extra_env=env)

    def inject(self, ctx: FaultContext) -> None:
        ctx.mark("no fault: the flood is the load",
                 f"QoS {ctx.cfg.params.get('qos', '1')} requests, switch slots "
                 f"{ctx.cfg.params.get('inflight', 'default')}")

    def judge(self, cfg: RunConfig, fig: Figures,
              exchanges: Sequence[Exchange]) -> list[Acceptance]:
        purchases = [e for e in exchanges if e.op == PURCHASE]
        reversed_keys = {e.key for e in exchanges if e.op == REVERSAL and e.approved}
        unanswered = [e for e in purchases if e.indeterminate]
        self.purchases = len(purchases)
        self.answered = sum(e.outcome == "answered" and not e.unsigned_91 for e in purchases)
        self.settled = sum(e.key in reversed_keys for e in unanswered)
        self.unsettled = [e.key for e in unanswered if e.key not in reversed_keys]
        self.not_sent = sum(e.outcome == NOT_SENT for e in purchases)
        if purchases:
            self.elapsed_s = max(e.done_s for e in purchases) - min(e.sent_s for e in purchases)
        if self.ctx is not None:
            self.shed = shed_requests(self.ctx)
        wanted = cfg.purchases or 0
        sent = len(purchases) - self.not_sent
        return [
            Acceptance(f"all {wanted} purchases sent", sent >= wanted,
                       f"{sent} sent, {self.not_sent} could not be"),
            Acceptance("every purchase answered, or unanswered and settled by its reversal "
                       "(00)", not self.unsettled,
                       f"{self.answered} answered, {len(unanswered)} unanswered of which "
                       f"{self.settled} reversed 00"
                       + (f"; not settled: {', '.join(self.unsettled[:5])}"
                          if self.unsettled else "")),
        ]

    def report_section(self, cfg: RunConfig, fig: Figures,
                       exchanges: Sequence[Exchange]) -> list[str]:
        rate = self.purchases / self.elapsed_s if self.elapsed_s > 0 else 0.0
        by_result = Counter(e.outcome if e.outcome != "answered" else
                            f"RC {e.rc}{'' if e.signed else ' unsigned'}"
                            for e in exchanges if e.op == PURCHASE)
        return ["## Flood", "", "| figure | value |", "|---|---|",
                f"| terminals / purchases asked | {cfg.terminals} / {cfg.purchases} |",
                f"| request QoS / switch slots (BPNT_MQTT_MAX_INFLIGHT) | "
                f"{cfg.params.get('qos', '1')} / {cfg.params.get('inflight', '64 (default)')} |",
                f"| purchases sent, first sent to last done | {self.purchases} in "
                f"{self.elapsed_s:.1f} s ({rate:.0f}/s) |",
                f"| purchases by result | "
                f"{', '.join(f'{k}: {n}' for k, n in sorted(by_result.items()))} |",
                f"| answered / unanswered and reversed 00 / not settled | {self.answered} / "
                f"{self.settled} / {len(self.unsettled)} |",
                f"| requests the switch logged as shed | {self.shed} |"]

    def summary_lines(self) -> list[str]:
        rate = self.purchases / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return [f"flood: {self.purchases} purchases in {self.elapsed_s:.1f} s ({rate:.0f}/s), "
                f"{self.answered} answered, {self.settled} unanswered and reversed, "
                f"{len(self.unsettled)} not settled; the switch shed {self.shed}"]
