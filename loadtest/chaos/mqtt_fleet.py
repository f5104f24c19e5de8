"""MQTT for the broker scenarios: the harness's own Mosquitto, the switches on it, and
each terminal of the fleet on its own MQTT connection (:class:`MqttLink`).

The terminals log on over TCP like every fleet (the harness's set-up), then switch to
MQTT before the load: every one of them connected to the broker, and every switch
subscribed, before the first purchase.
"""

from __future__ import annotations

from dataclasses import dataclass

from terminal_sim.links.mqtt import MqttLink

from .broker import OwnBroker
from .context import FaultContext
from .load import Connect

#: In a switch's log once its MQTT session is subscribed (switch/transports/mqtt.py).
SUBSCRIBED = "subscribed on 127.0.0.1"
#: A terminal's first connection to the broker, before the load.
CONNECT_TIMEOUT_S = 15.0
#: How many shed requests a switch logged (switch/transports/mqtt.py ``_shed``).
SHED_TEXT = "shed a QoS"


@dataclass
class MqttSetup:
    broker: OwnBroker
    request_qos: int = 1

    def connect(self) -> Connect:
        def link(tid: str, _index: int) -> MqttLink:
            mqtt = MqttLink("127.0.0.1", self.broker.port, tid, request_qos=self.request_qos)
            if not mqtt.wait_connected(CONNECT_TIMEOUT_S):
                mqtt.close()
                raise RuntimeError(f"terminal {tid}: no connection to the broker on "
                                   f"127.0.0.1:{self.broker.port} in {CONNECT_TIMEOUT_S:g} s")
            return mqtt

        return link


def start_broker(ctx: FaultContext, *, request_qos: int = 1,
                 extra_env: dict[str, str] | None = None) -> MqttSetup:
    """Before the switches: the broker (stopped after them), the switches' settings
    (``BPNT_MQTT_URL``, ready once subscribed), and the terminals' links routed to it."""
    broker = ctx.stack.enter_context(OwnBroker(ctx.switches.log_dir / "mosquitto.log"))
    ctx.mark("mosquitto listening", f"pid {broker.pid}, {broker.url}")
    ctx.switches.extra_env.update({"BPNT_MQTT_URL": broker.url, **(extra_env or {})})
    ctx.switches.ready_text = SUBSCRIBED
    setup = MqttSetup(broker, request_qos)
    ctx.connect = setup.connect()
    return setup


def shed_requests(ctx: FaultContext) -> int:
    """Requests the switches shed (their logs), over the whole run."""
    return sum(ctx.switches.log_count(i, SHED_TEXT) for i in range(len(ctx.switches.slots)))
