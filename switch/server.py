"""``bpnt-switch serve``: the long-running switch (asyncio; TCP, MQTT, serial)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from typing import Protocol

from switch import native
from switch.clock import Clock
from switch.db.schema import open_database
from switch.host.runner import AsyncHost
from switch.host.service import HostService
from switch.metrics import SwitchMetrics
from switch.settings import Settings
from switch.transports.mqtt import REQUEST_FILTER, MqttTransport
from switch.transports.nofile import ensure_nofile_limit
from switch.transports.presence import PresenceStore
from switch.transports.serial import SerialTransport
from switch.transports.tcp import TcpTransport

log = logging.getLogger("bpnt.server")
#: Exit status of a switch stopped by a broken invariant (EX_SOFTWARE).
EXIT_INVARIANT = 70


class Transport(Protocol):
    async def close(self) -> None: ...


async def serve(settings: Settings, *, clock: Clock | None = None,
                ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """Serve on every configured transport until SIGINT/SIGTERM (or ``stop`` is set);
    then drain and close.  Every transport calls the one ``AsyncHost`` (one writer).
    ``/metrics`` is served on ``metrics_port`` (docs/METRICS.md) unless it is 0."""
    db = open_database(settings.database_url)
    metrics = SwitchMetrics()
    host = AsyncHost(HostService(db, settings, clock, observer=metrics))
    presence = PresenceStore(db, clock)
    transports: list[Transport] = []
    if settings.tcp_enabled:
        ensure_nofile_limit(settings.max_connections)  # a descriptor per connection
        tcp = TcpTransport(metrics.metered("tcp", host.handle), settings)
        metrics.watch_connections("tcp", lambda: tcp.open_connections)
        bound_host, bound_port = await tcp.start()
        transports.append(tcp)
        print(f"bpnt-switch listening on {bound_host}:{bound_port} db={_safe_url(settings)}",
              flush=True)
    if settings.mqtt_url:
        on_mqtt = metrics.metered("mqtt", host.handle)
        mqtt = MqttTransport(on_mqtt, settings, presence, on_dropped=on_mqtt.dropped)
        metrics.watch_connections("mqtt", lambda: float(mqtt.connected.is_set()))
        metrics.watch_presence(presence.terminals)
        where = await mqtt.start()
        transports.append(mqtt)
        print(f"bpnt-switch on MQTT {where} (shared subscription {REQUEST_FILTER})", flush=True)
    if settings.serial_port:
        serial = SerialTransport(metrics.metered("serial", host.handle), settings)
        metrics.watch_connections("serial", lambda: float(serial.line_open))
        where = await serial.start()
        transports.append(serial)
        print(f"bpnt-switch on serial {where} at {settings.serial_baud} baud", flush=True)
    if not transports:
        raise SystemExit("no transport configured (TCP off, no MQTT URL, no serial port)")
    metrics_port = metrics.start_http(settings.metrics_host, settings.metrics_port)
    if metrics_port is not None:
        print(f"bpnt-switch metrics on http://{settings.metrics_host}:{metrics_port}/metrics",
              flush=True)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    log.info("event loop: %s.%s; purchase path %s (switch/native.py)",
             type(loop).__module__, type(loop).__name__, native.state)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    stopping = asyncio.ensure_future(stop.wait())
    broken = asyncio.ensure_future(host.broken())
    await asyncio.wait((stopping, broken), return_when=asyncio.FIRST_COMPLETED)
    for waiter in (stopping, broken):
        waiter.cancel()
    log.info("stopping: closing transports, finishing requests in flight")
    for transport in transports:
        await transport.close()
    await host.aclose()
    await asyncio.to_thread(metrics.stop_http)
    presence.close()
    db.dispose()
    if host.failure is not None:
        raise InvariantBroken(f"invariant broken: {host.failure}") from host.failure


class InvariantBroken(SystemExit):
    """``bpnt-switch serve`` exits with :data:`EXIT_INVARIANT` and the reason."""

    def __init__(self, reason: str) -> None:
        print(f"bpnt-switch: {reason}; stopped without answering", file=sys.stderr, flush=True)
        super().__init__(EXIT_INVARIANT)


def _safe_url(settings: Settings) -> str:
    """The database URL without a password."""
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)
