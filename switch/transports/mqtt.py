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
from switch.transports.presence import PresenceStore

log = logging.getLogger("bpnt.mqtt")

UnitHandler = Callable[[bytes], Awaitable[bytes | None]]
TOPIC_ROOT = "bpnt/v1/edc"
SHARE_GROUP = "switch"
REQUEST_FILTER = f"$share/{SHARE_GROUP}/{TOPIC_ROOT}/+/req"
STATUS_FILTER = f"{TOPIC_ROOT}/+/status"
QOS = 1
#: Seconds to wait for the broker's PUBACK of a response.
PUBLISH_TIMEOUT_S = 10.0


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
                 presence: PresenceStore | None = None) -> None:
        assert settings.mqtt_url is not None, "mqtt_url not configured"
        self._handler = handler
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
        client = aiomqtt.Client(
            self._host, self._port, identifier=self._identifier,
            keepalive=self._settings.mqtt_keepalive_s, clean_session=True,
            max_queued_incoming_messages=4 * self._settings.mqtt_max_inflight,
            timeout=PUBLISH_TIMEOUT_S,
        )
        async with client, asyncio.TaskGroup() as tasks:
            await client.subscribe(REQUEST_FILTER, qos=QOS)
            await client.subscribe(STATUS_FILTER, qos=QOS)
            self.sessions += 1
            self.connected.set()
            log.info("subscribed on %s:%d as %s", self._host, self._port, self._identifier)
            async for message in client.messages:
                await self._inflight.acquire()  # bounded: back-pressure on the broker
                tasks.create_task(self._dispatch(client, message))

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
            self._inflight.release()

    async def _record_presence(self, tid: str, payload: bytes) -> None:
        assert self._presence is not None
        try:
            await self._presence.update(tid, payload)
        except Exception:  # presence is not money: never let it end the session
            log.exception("could not record presence of %s", tid)

    async def _answer(self, client: aiomqtt.Client, tid: str, unit: bytes) -> None:
        if not 0 < len(unit) <= self._settings.max_frame_bytes:
            log.warning("dropping a %d-byte request from %s", len(unit), tid)
            return
        response = await self._handler(unit)
        if response is None:
            return  # the host refused the unit; the terminal times out
        await client.publish(response_topic(tid), response, qos=QOS)
        self.units_handled += 1
        log.debug("answered a %d-byte request from %s", len(unit), tid)
