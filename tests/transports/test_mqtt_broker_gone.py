"""A session ends the moment its broker's socket is closed (switch/transports/mqtt.py
``_watch_broker``), without waiting for paho's read callback or the keepalive: the
uvloop race of docs/CHAOS.md "A switch that did not hear the broker go" left a session
"connected" to nothing for about 20 s.  Real Mosquitto, our own, killed."""

from __future__ import annotations

import asyncio
import time

import aiomqtt
import pytest

from switch.transports.mqtt_flow import FlowControlledClient
from tests.transports.conftest import Broker

#: Far below the keepalive given to the client (60 s): only the peek can be this quick.
NOTICED_WITHIN_S = 3.0


def _client(broker: Broker) -> FlowControlledClient:
    return FlowControlledClient("127.0.0.1", broker.port, queue_bound=4,
                                on_shed=lambda _message, _waiting: None, keepalive=60)


def test_broker_gone_is_false_while_connected_and_true_once_it_is_killed(
        broker: Broker) -> None:
    async def scenario() -> float:
        async with _client(broker) as client:
            await client.subscribe("bpnt/test/#", qos=1)
            await client.publish("bpnt/test/x", b"hello", qos=1)  # data to peek at
            await asyncio.sleep(0.2)
            assert not client.broker_gone(), "a live connection with a message waiting"
            broker.stop()  # SIGKILL: the kernel closes its end
            killed = time.monotonic()
            while not client.broker_gone():
                assert time.monotonic() - killed < NOTICED_WITHIN_S, "EOF not seen"
                await asyncio.sleep(0.05)
            seen_s = time.monotonic() - killed
            client.end_session("the broker closed the connection")
            with pytest.raises(aiomqtt.MqttError):
                async for _message in client.messages:
                    pass
            return seen_s

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=20)) < NOTICED_WITHIN_S


def test_a_session_ended_by_the_watch_leaves_async_with_at_once(broker: Broker) -> None:
    """Leaving ``async with`` does not wait for a DISCONNECT answer from a dead broker
    (aiomqtt's graceful exit would wait without a limit)."""

    async def scenario() -> float:
        client = _client(broker)
        started = 0.0
        with pytest.raises(aiomqtt.MqttError):
            async with client:
                broker.stop()
                while not client.broker_gone():
                    await asyncio.sleep(0.05)
                client.end_session("the broker closed the connection")
                started = time.monotonic()
                async for _message in client.messages:
                    pass
        return time.monotonic() - started

    assert asyncio.run(asyncio.wait_for(scenario(), timeout=20)) < 1.0


def test_a_session_that_lost_its_read_callback_still_ends_when_the_broker_goes(
        broker: Broker) -> None:
    """The race itself, made certain: the session's socket reader is taken away (as the
    uvloop error did), then the broker is killed.  paho can no longer see the EOF, and
    the keepalive (60 s) is far off; the transport's watch ends the session anyway, and
    it subscribes again once the broker is back."""
    from switch.settings import Settings
    from switch.transports.mqtt import MqttTransport

    async def handler(_unit: bytes) -> bytes | None:
        return None

    async def scenario() -> tuple[float, float]:
        settings = Settings(mqtt_url=broker.url, mqtt_keepalive_s=60,
                            mqtt_reconnect_max_s=0.5)
        transport = MqttTransport(handler, settings)
        await transport.start()
        try:
            assert transport.connected.is_set() and transport._client is not None
            sock = transport._client._client.socket()
            assert sock is not None
            asyncio.get_running_loop().remove_reader(sock.fileno())
            broker.stop()
            killed = time.monotonic()
            while transport.connected.is_set():
                assert time.monotonic() - killed < 10, "the session did not end"
                await asyncio.sleep(0.05)
            ended_s = time.monotonic() - killed
            await asyncio.to_thread(broker.start)
            back = time.monotonic()
            await asyncio.wait_for(transport.connected.wait(), 10)
            return ended_s, time.monotonic() - back
        finally:
            await transport.close()

    ended_s, again_s = asyncio.run(asyncio.wait_for(scenario(), timeout=40))
    assert ended_s < NOTICED_WITHIN_S
    assert again_s < NOTICED_WITHIN_S
