"""MQTT flow control for the switch: the broker holds what the switch has no room for.

aiomqtt (2.5) lets paho acknowledge every QoS 1 PUBLISH as soon as it arrives and then
drops it when its own bounded queue is full: under a flood, requests the broker thinks
delivered are lost without a trace.  :class:`FlowControlledClient` closes that gap:

- **MQTT 5 Receive Maximum** (``receive_maximum`` in CONNECT): the broker sends at most
  that many QoS 1 messages not yet acknowledged; the rest wait in the broker (Mosquitto:
  ``max_queued_messages`` per client, default 1000; beyond it the *broker* drops);
- **manual PUBACK** (paho ``manual_ack``): the switch acknowledges a message only when
  it takes it off the queue to handle it (:meth:`FlowControlledClient.take`), in the
  order received (MQTT §4.6).  Until then it counts against the window;
- **a bounded queue that QoS 1 cannot overflow**: QoS 0 messages (no flow control, out
  of spec for a request) take at most ``queue_bound`` places, and ``receive_maximum``
  more are kept for QoS 1, which the window already bounds.  A QoS 1 message must never
  be shed: unacknowledged, it would hold a place of the window for the rest of the
  session (with a window of 1, every later QoS 1 message would stay in the broker);
- **visible shedding**: a QoS 0 message that finds its places taken (or a QoS 1 message
  beyond the window: a broker fault) goes to ``on_shed`` and is not acknowledged and not
  handled: its terminal times out and reverses (HOST_SPEC §5).

The window is 1 by default (:data:`RECEIVE_MAXIMUM`): Mosquitto before 2.0.13 (Debian
and Ubuntu ship 2.0.11) releases a whole window from its queue on every PUBACK of the
oldest message in flight (its issue #2306), so with a window of 2 it had 100 of 200
messages unacknowledged at once, here; a window of 1 it keeps.  One is enough: the
switch acknowledges a request when it *takes* it, not when it has answered it, so it
still handles ``mqtt_max_inflight`` requests at once, and the window costs one round
trip to the broker per request (5,600-8,200 requests/s on loopback, measured alone).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

#: QoS 1 messages the broker may send before the switch has acknowledged one.
RECEIVE_MAXIMUM = 1

ShedHandler = Callable[[aiomqtt.Message, int], None]


def connect_properties(receive_maximum: int) -> Properties:
    """CONNECT properties announcing the switch's window (MQTT 5 §3.1.2.11.3)."""
    assert 1 <= receive_maximum <= 65_535, receive_maximum
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.ReceiveMaximum = receive_maximum
    return properties


class FlowControlledClient(aiomqtt.Client):
    """An ``aiomqtt.Client`` on MQTT 5 with a receive window of ``receive_maximum``,
    manual acknowledgement, and a queue of ``queue_bound`` places for QoS 0 and
    ``receive_maximum`` more for QoS 1 (see the module docstring).

    Relies on aiomqtt 2.5 internals: ``_client`` (the paho client), ``_queue``, the
    ``_on_message`` callback it installs on paho and ``_disconnected`` (the session's
    end); tests/transports/test_mqtt_flood.py floods it on a real broker.
    """

    def __init__(self, hostname: str, port: int, *, queue_bound: int, on_shed: ShedHandler,
                 receive_maximum: int = RECEIVE_MAXIMUM, **kwargs: Any) -> None:
        assert queue_bound >= 1, queue_bound
        super().__init__(hostname, port, protocol=aiomqtt.ProtocolVersion.V5,
                         properties=connect_properties(receive_maximum),
                         max_queued_incoming_messages=queue_bound + receive_maximum,
                         **kwargs)
        self._client.manual_ack_set(True)
        self._on_shed = on_shed
        self.receive_maximum = receive_maximum
        self.queue_bound = queue_bound
        #: The most messages seen waiting in the queue at once.
        self.most_waiting = 0

    def _on_message(self, client: paho.Client, userdata: Any,
                    message: paho.MQTTMessage) -> None:
        """paho's callback (on the event loop: aiomqtt drives paho's socket there)."""
        received = aiomqtt.Message._from_paho_message(message)
        places = self.queue_bound if received.qos == 0 else self.queue_bound \
            + self.receive_maximum
        if self._queue.qsize() >= places:
            self._on_shed(received, self._queue.qsize())
            return
        self._queue.put_nowait(received)  # cannot be full: places <= its maxsize
        self.most_waiting = max(self.most_waiting, self._queue.qsize())

    def broker_gone(self) -> bool:
        """True when the broker's end of the TCP connection is closed (EOF) or reset:
        one non-blocking ``MSG_PEEK`` read of paho's socket, which takes nothing paho
        would read.  False while connected, with no socket yet, or on TLS (a peek there
        would see TLS records, not the stream)."""
        sock = self._client.socket()
        if not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket):
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True  # reset, or closed under us

    def end_session(self, reason: str) -> None:
        """End the session now, as aiomqtt does when paho's read fails: its message
        iterator raises :class:`aiomqtt.MqttError` and leaving ``async with`` does not
        wait for a DISCONNECT exchange with a broker that is not there."""
        if not self._disconnected.done():
            self._disconnected.set_exception(aiomqtt.MqttError(reason))

    def take(self, message: aiomqtt.Message) -> None:
        """The switch takes ``message`` on: acknowledge it (PUBACK), which opens the
        window for the next.  QoS 0 carries nothing to acknowledge."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)
