"""``broker-restart`` (FAILURES F8, HOST_SPEC §1 MQTT): the terminals on MQTT, through
the harness's own Mosquitto; at 30 % of the load the broker gets SIGTERM (by PID), is
down ``down_s`` (default 6 s) and is started again on the same port.  The window ends
when it accepts connections again.

While it is down nothing crosses: a request published before the stop whose answer
was lost times out (reversal pending), a terminal without a connection cannot send
(``not-sent``, nothing to reverse).  The broker keeps nothing across the restart
(no persistence): the switch re-subscribes (its back-off: 0.2 s doubling, at most
``BPNT_MQTT_RECONNECT_MAX_S`` = 5 s), paho reconnects the terminals (1-2 s), and the
pending reversals go first.

A terminal that reconnects before the switch has re-subscribed publishes into a
broker with no subscriber for its request: the request is dropped, the terminal
times out and reverses.  So promised: every switch subscribed again within 7 s of the
broker listening again (its longest back-off, 5 s, and 2 s), approvals again within
that plus the EDC time-out (a request lost so) plus 2 s: 14 s at the 5 s time-out.
"""

from __future__ import annotations

from ..broker import unavailable
from ..config import RunConfig
from ..context import Acceptance, FaultContext
from ..metrics import Figures
from ..mqtt_fleet import SUBSCRIBED, MqttSetup, start_broker
from . import Scenario, recovered_within, register

#: The switch's longest back-off between two connection attempts
#: (``BPNT_MQTT_RECONNECT_MAX_S``, default 5 s), plus the time to connect and subscribe.
RESUBSCRIBE_LIMIT_S = 5.0 + 2.0
MARGIN_S = 2.0


def recovery_limit_s(cfg: RunConfig) -> float:
    """Re-subscribed, plus a request lost before that timing out, plus a margin."""
    return RESUBSCRIBE_LIMIT_S + cfg.timeout_s + MARGIN_S


@register
class BrokerRestart(Scenario):
    name = "broker-restart"
    summary = ("MQTT terminals; SIGTERM the harness's own Mosquitto for down_s (6 s), "
               "start it again on the same port")
    engines = ("sqlite",)
    full_settings = {"duration_s": 45.0}
    ci_params = {"down_s": "4"}

    def __init__(self) -> None:
        self.mqtt: MqttSetup | None = None
        #: Seconds from the broker listening again to each switch subscribed again.
        self.resubscribed_s: list[float | None] = []

    def unsupported(self, cfg: RunConfig) -> str | None:
        return super().unsupported(cfg) or unavailable()

    def before_switches(self, ctx: FaultContext) -> None:
        self.mqtt = start_broker(ctx)

    def inject(self, ctx: FaultContext) -> None:
        assert self.mqtt is not None
        broker = self.mqtt.broker
        down_s = ctx.cfg.param_s("down_s", 6.0)
        ctx.wait_until(self.fault_at_s(ctx))
        subscribed = [ctx.switches.log_count(i, SUBSCRIBED)
                      for i in range(len(ctx.switches.slots))]
        with ctx.fault("broker down"):
            pid = broker.pid
            code = broker.stop()
            ctx.mark("SIGTERM mosquitto", f"pid {pid}, exit status {code}")
            ctx.sleep(down_s)
            broker.start()
            back_s = ctx.mark("mosquitto listening again", f"pid {broker.pid}").at_s
        for index, before in enumerate(subscribed):
            again = ctx.switches.wait_log(index, SUBSCRIBED, before + 1,
                                          RESUBSCRIBE_LIMIT_S * 2, ctx.abort)
            if again:
                at_s = ctx.mark(f"switch {index} subscribed again").at_s
                self.resubscribed_s.append(at_s - back_s)
            else:
                ctx.mark(f"switch {index} not subscribed again",
                         f"within {RESUBSCRIBE_LIMIT_S * 2:g} s")
                self.resubscribed_s.append(None)

    def acceptance(self, cfg: RunConfig, fig: Figures) -> list[Acceptance]:
        checks = [Acceptance(
            f"switch {n} subscribed again within {RESUBSCRIBE_LIMIT_S:g} s of the broker "
            "listening", s is not None and s <= RESUBSCRIBE_LIMIT_S,
            "not subscribed again" if s is None else f"{s:.2f} s")
            for n, s in enumerate(self.resubscribed_s)]
        return checks + recovered_within(fig, recovery_limit_s(cfg),
                                         "the broker listening again")

    def summary_lines(self) -> list[str]:
        return [f"switch {n} subscribed again "
                f"{'never' if s is None else f'{s:.2f} s'} after the broker was back"
                for n, s in enumerate(self.resubscribed_s)]
