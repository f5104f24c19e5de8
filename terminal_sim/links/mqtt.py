"""The EDC's MQTT link (HOST_SPEC §1), blocking, on paho-mqtt's network thread.

On connect the terminal subscribes to ``bpnt/v1/edc/{tid}/resp`` and publishes a
retained ``online`` on ``.../status``; its Last Will is a retained ``offline`` there,
so the broker tells the switch when the terminal vanishes.  Requests go to
``.../req``.  QoS 1 both ways.  paho reconnects by itself after a broker restart.

Error mapping for the EDC (terminal_sim.link): no broker connection before the
request is published → :class:`NotConnected` (certainly not sent, nothing to
reverse); published but no answer in time → :class:`LinkTimeout` (reversal pending).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from switch.transports.mqtt import QOS, request_topic, response_topic, status_topic
from terminal_sim.link import LinkTimeout, NotConnected
from terminal_sim.links.matching import answers

log = logging.getLogger("bpnt.edc.mqtt")

#: Responses waiting to be read (a bound; stale copies beyond it are dropped).
MAX_QUEUED_RESPONSES = 32


class MqttLink:
    def __init__(self, host: str, port: int, tid: str, *, keepalive_s: int = 10,
                 connect_timeout_s: float = 5.0, request_qos: int = QOS) -> None:
        assert request_qos in (0, 1), request_qos
        self.tid = tid
        self.connect_timeout_s = connect_timeout_s
        #: QoS of requests: 1 (HOST_SPEC §1); 0 only to play an out-of-spec terminal,
        #: whose requests the broker does not hold for the switch (no flow control).
        self.request_qos = request_qos
        #: Requests handed to the broker (each exchange publishes one, once connected).
        self.requests_published = 0
        self._connected = threading.Event()
        self._responses: queue.Queue[bytes] = queue.Queue(MAX_QUEUED_RESPONSES)
        client = paho.Client(CallbackAPIVersion.VERSION2,
                             client_id=f"edc-{tid}-{os.urandom(3).hex()}",
                             protocol=paho.MQTTv311, clean_session=True)
        client.will_set(status_topic(tid), b"offline", qos=QOS, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        client.connect_async(host, port, keepalive=keepalive_s)
        client.loop_start()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        if not self._connected.wait(self.connect_timeout_s):
            raise NotConnected("no connection to the MQTT broker")
        self._drain()
        deadline = time.monotonic() + timeout_s
        # QoS 1: paho keeps it in flight (and resends it on reconnect) until PUBACK.
        self._client.publish(request_topic(self.tid), unit, qos=self.request_qos)
        self.requests_published += 1
        while (remaining_s := deadline - time.monotonic()) > 0:
            try:
                response = self._responses.get(timeout=remaining_s)
            except queue.Empty:
                break
            if answers(unit, response):
                return response
            log.info("%s: dropped a stale response", self.tid)
        raise LinkTimeout(f"no response in {timeout_s:.1f} s")

    def close(self) -> None:
        """Clean shutdown: say ``offline`` ourselves (a clean DISCONNECT skips the Will)."""
        if self._connected.is_set():
            info = self._client.publish(status_topic(self.tid), b"offline", qos=QOS,
                                        retain=True)
            info.wait_for_publish(timeout=2.0)
        self._client.disconnect()
        self._client.loop_stop()

    def _drain(self) -> None:
        while True:
            try:
                self._responses.get_nowait()
            except queue.Empty:
                return

    # -- paho callbacks (its network thread) -------------------------------------

    def _on_connect(self, client: paho.Client, _userdata: object, _flags: object,
                    reason_code: object, _properties: object) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("%s: broker refused the connection: %s", self.tid, reason_code)
            return
        # Subscribe before anything is published: the broker handles packets in order.
        client.subscribe(response_topic(self.tid), qos=QOS)
        client.publish(status_topic(self.tid), b"online", qos=QOS, retain=True)
        self._connected.set()

    def _on_disconnect(self, _client: paho.Client, _userdata: object, _flags: object,
                       _reason_code: object, _properties: object) -> None:
        self._connected.clear()

    def _on_message(self, _client: paho.Client, _userdata: object,
                    message: paho.MQTTMessage) -> None:
        try:
            self._responses.put_nowait(bytes(message.payload))
        except queue.Full:
            log.warning("%s: response queue full; dropping a response", self.tid)
