"""MQTT transport over aiomqtt (HOST_SPEC §1).  Reads units, calls the host, writes units.

- requests on ``$share/switch/bpnt/v1/edc/+/req`` (a shared subscription: several
  switch processes split the terminals' traffic), responses on ``.../{tid}/resp``,
  both QoS 1;
- presence from ``bpnt/v1/edc/+/status`` (retained ``online``, Last Will ``offline``),
  a plain subscription so every switch sees the retained state;
- the broker going away ends the session; the switch reconnects with exponential
  backoff.  A QoS 1 request delivered twice is answered twice from the host's
  idempotency record (HOST_SPEC §4) and moves money at most once.  A response lost
  with the connection leaves the terminal to time out and reverse (HOST_SPEC §5):
  the debit was committed before its response was published, so nothing a terminal
  saw approved is ever lost.
- back-pressure (:mod:`switch.transports.mqtt_flow`): MQTT 5 with a Receive Maximum
  (1 by default), and a request acknowledged (PUBACK) only when the switch has room to
  handle it (one of ``mqtt_max_inflight`` slots), so the broker holds the rest: at most
  the window's QoS 1 messages wait in the switch, and ``mqtt_max_inflight`` are handled
  at once.  QoS 0 requests (out of spec: the broker cannot hold them back) wait in at
  most ``mqtt_max_inflight`` places; one that finds none is shed: logged, counted
  (``requests_shed``), not answered; its terminal times out and reverses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiomqtt

from switch.settings import Settings
from switch.transports.mqtt_flow import RECEIVE_MAXIMUM, FlowControlledClient
from switch.transports.presence import PresenceStore

log = logging.getLogger("bpnt.mqtt")

UnitHandler = Callable[[bytes], Awaitable[bytes | None]]
#: Told of a request taken off the broker and never handed to the host (the metrics).
DropHandler = Callable[[bytes], None]
TOPIC_ROOT = "bpnt/v1/edc"
SHARE_GROUP = "switch"
REQUEST_FILTER = f"$share/{SHARE_GROUP}/{TOPIC_ROOT}/+/req"
STATUS_FILTER = f"{TOPIC_ROOT}/+/status"
QOS = 1
#: Seconds to wait for the broker's PUBACK of a response.
PUBLISH_TIMEOUT_S = 10.0
#: How often a session looks whether the broker closed its socket (see _watch_broker).
BROKER_CHECK_S = 0.5


def request_topic(tid: str) -> str:
    return f"{TOPIC_ROOT}/{tid}/req"


def response_topic(tid: str) -> str:
    return f"{TOPIC_ROOT}/{tid}/resp"


def status_topic(tid: str) -> str:
    return f"{TOPIC_ROOT}/{tid}/status"


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """``mqtt://HOST:PORT`` (port 1883 when left out).

    >>> parse_mqtt_url("mqtt://127.0.0.1:1884")
    ('127.0.0.1', 1884)
    """
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"not an mqtt://HOST:PORT URL: {url!r}")
    return parts.hostname, parts.port or 1883


def topic_tid(topic: str, leaf: str) -> str | None:
    """The TID of ``bpnt/v1/edc/{tid}/{leaf}``, or ``None``.

    >>> topic_tid("bpnt/v1/edc/EDC00001/req", "req")
    'EDC00001'
    """
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != TOPIC_ROOT or parts[4] != leaf:
        return None
    return parts[3] or None


class MqttTransport:
    def __init__(self, handler: UnitHandler, settings: Settings,
                 presence: PresenceStore | None = None, *,
                 receive_maximum: int = RECEIVE_MAXIMUM,
                 on_dropped: DropHandler | None = None) -> None:
        assert settings.mqtt_url is not None, "mqtt_url not configured"
        assert 1 <= receive_maximum <= settings.mqtt_max_inflight, receive_maximum
        self._handler = handler
        self._on_dropped = on_dropped
        self._receive_maximum = receive_maximum
        self._settings = settings
        self._presence = presence
        self._host, self._port = parse_mqtt_url(settings.mqtt_url)
        self._identifier = f"bpnt-switch-{os.getpid()}-{os.urandom(3).hex()}"
        self._inflight = asyncio.Semaphore(settings.mqtt_max_inflight)
        self._task: asyncio.Task[None] | None = None
        #: Set while subscribed; tests and ``serve`` wait on it.
        self.connected = asyncio.Event()
        self.sessions = 0
        self.units_handled = 0
        #: Requests that found no place in the switch's queue: not answered.
        self.requests_shed = 0
        #: Presence messages shed the same way.
        self.status_shed = 0
        #: Requests taken on but not answered (bad length, or the host gave no answer).
        self.requests_unanswered = 0
        #: Messages taken off the broker and not yet done: now, and the most at once.
        self.taken = 0
        self.most_taken = 0
        #: Times a message waited for one of the slots (the window was full).
        self.waits_for_room = 0
        self._most_waiting = 0
        self._client: FlowControlledClient | None = None

    def counters(self) -> dict[str, int]:
        """What the transport did (for logs, tests and chaos harnesses)."""
        waiting = max(self._most_waiting,
                      self._client.most_waiting if self._client is not None else 0)
        return {"sessions": self.sessions, "units_handled": self.units_handled,
                "requests_shed": self.requests_shed, "status_shed": self.status_shed,
                "requests_unanswered": self.requests_unanswered,
                "most_taken": self.most_taken, "waits_for_room": self.waits_for_room,
                "most_waiting": waiting}

    async def start(self, *, wait_s: float = 5.0) -> str:
        """Start the session loop; wait up to ``wait_s`` for the first subscription
        (the switch still starts, and keeps retrying, if the broker is down)."""
        self._task = asyncio.create_task(self._run(), name="mqtt-session")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), wait_s)
        if not self.connected.is_set():
            log.warning("broker %s:%d not reachable yet; retrying", self._host, self._port)
        return f"mqtt://{self._host}:{self._port}"

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        """Sessions forever; exponential backoff between failed attempts, reset to the
        minimum once a session has been established."""
        backoff_s = self._settings.mqtt_reconnect_min_s
        while True:
            sessions_before = self.sessions
            try:
                await self._session()
            except* aiomqtt.MqttError as group:
                log.warning("MQTT session ended (%s)", group.exceptions[0])
            self.connected.clear()
            if self.sessions > sessions_before:
                backoff_s = self._settings.mqtt_reconnect_min_s
            log.info("reconnecting to %s:%d in %.1f s", self._host, self._port, backoff_s)
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, self._settings.mqtt_reconnect_max_s)

    async def _session(self) -> None:
        slots = self._settings.mqtt_max_inflight
        client = FlowControlledClient(
            self._host, self._port, receive_maximum=self._receive_maximum,
            queue_bound=slots, on_shed=self._shed,
            identifier=self._identifier, keepalive=self._settings.mqtt_keepalive_s,
            clean_start=True, timeout=PUBLISH_TIMEOUT_S,
        )
        try:
            async with client, asyncio.TaskGroup() as tasks:
                self._client = client
                await client.subscribe(REQUEST_FILTER, qos=QOS)
                await client.subscribe(STATUS_FILTER, qos=QOS)
                tasks.create_task(self._watch_broker(client))
                self.sessions += 1
                self.connected.set()
                log.info("subscribed on %s:%d as %s (receive maximum %d, %d slots)",
                         self._host, self._port, self._identifier, self._receive_maximum,
                         slots)
                async for message in client.messages:
                    if self._inflight.locked():
                        self.waits_for_room += 1
                    await self._inflight.acquire()  # room to handle it ...
                    client.take(message)  # ... so PUBACK: the broker sends the next
                    self.taken += 1
                    self.most_taken = max(self.most_taken, self.taken)
                    tasks.create_task(self._dispatch(client, message))
        finally:
            self._most_waiting = max(self._most_waiting, client.most_waiting)
            self._client = None

    async def _watch_broker(self, client: FlowControlledClient) -> None:
        """End the session as soon as the broker's side of the socket is closed.

        paho learns of a closed socket from its read callback.  Under uvloop that has
        been seen to go missing as the broker went (``RuntimeError: unable to perform
        operation on <UVPoll closed=True>`` from ``add_writer``, docs/CHAOS.md "A
        switch that did not hear the broker go"), and the session then stayed
        "connected" to nothing until the keepalive ran out, about 20 s later.  One
        peek every ``BROKER_CHECK_S`` costs a system call."""
        while True:
            await asyncio.sleep(BROKER_CHECK_S)
            if client.broker_gone():
                log.warning("the broker closed the connection")
                client.end_session("the broker closed the connection")
                return

    def _shed(self, message: aiomqtt.Message, waiting: int) -> None:
        tid = topic_tid(message.topic.value, "req")
        if message.qos > 0:
            log.error("the broker sent more than the receive maximum (%d) of QoS 1 "
                      "messages: one shed, unacknowledged", self._receive_maximum)
        if tid is None:  # presence, not a request: the next status will tell
            self.status_shed += 1
            log.info("shed a status message (%d waiting)", waiting)
            return
        self.requests_shed += 1
        self._dropped(message.payload)
        log.warning("shed a QoS %d request from %s: %d already waiting; not acknowledged, "
                    "not answered (the terminal reverses); %d shed so far",
                    message.qos, tid, waiting, self.requests_shed)

    async def _dispatch(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        try:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                return
            topic = message.topic.value
            if (tid := topic_tid(topic, "req")) is not None:
                await self._answer(client, tid, bytes(payload))
            elif (tid := topic_tid(topic, "status")) is not None and self._presence:
                await self._record_presence(tid, bytes(payload))
        finally:
            self.taken -= 1
            self._inflight.release()

    def _dropped(self, payload: object) -> None:
        if self._on_dropped is not None and isinstance(payload, bytes | bytearray):
            self._on_dropped(bytes(payload))

    async def _record_presence(self, tid: str, payload: bytes) -> None:
        assert self._presence is not None
        try:
            await self._presence.update(tid, payload)
        except Exception:  # presence is not money: never let it end the session
            log.exception("could not record presence of %s", tid)

    async def _answer(self, client: aiomqtt.Client, tid: str, unit: bytes) -> None:
        if not 0 < len(unit) <= self._settings.max_frame_bytes:
            self.requests_unanswered += 1
            self._dropped(unit)
            log.warning("dropping a %d-byte request from %s", len(unit), tid)
            return
        response = await self._handler(unit)
        if response is None:
            self.requests_unanswered += 1
            log.warning("no answer from the host to a request from %s; the terminal "
                        "times out and reverses", tid)
            return
        await client.publish(response_topic(tid), response, qos=QOS)
        self.units_handled += 1
        log.debug("answered a %d-byte request from %s", len(unit), tid)
