"""Serial transport: STX/length/unit/ETX/LRC with ACK/NAK (HOST_SPEC §1), over pyserial.

Reads units, calls the host, writes units.  The framing and the retry state machine
are the sans-IO :mod:`switch.protocol.serial_framing`; :class:`SerialChannel` is its
blocking driver over a pyserial port (also used by the terminal's ``SerialLink``).
pyserial is blocking, so the switch runs the line in one thread and hands each unit
to the asyncio host (``AsyncHost.handle``: the one writer of money).

A lost ACK costs no wait on either side: :meth:`SerialChannel.send_unit` also returns
when the peer's next frame arrives, which HOST_SPEC §1 takes as the ACK (a response
whose ACK was lost stops being retransmitted as soon as the terminal's next request
arrives, and that request is answered at once; see :class:`SerialConnection`).

One retransmission cache: a frame identical to the last one answered (its ACK was
lost, the terminal sent it again) gets the same response again without reaching the
host.  Financial repeats would be harmless anyway (HOST_SPEC §4), but a repeated
logon would rotate the working keys a second time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from switch.protocol.serial_framing import SendState, SerialConnection
from switch.settings import Settings

log = logging.getLogger("bpnt.serial")

UnitHandler = Callable[[bytes], Coroutine[Any, Any, bytes | None]]
READ_CHUNK_BYTES = 4096
#: How often the listener thread looks at its stop flag while the line is quiet.
IDLE_POLL_S = 0.2


class SerialPort(Protocol):
    """What we use of ``serial.Serial`` (and of test doubles that wrap one)."""

    timeout: float | None

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes, /) -> int | None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class SerialLinkDown(Exception):
    """No ACK after the last retransmission (HOST_SPEC §1: report the link down)."""


def open_port(url: str, baud: int) -> SerialPort:
    """A device path (``/dev/ttyUSB0``, a pty) or a pyserial URL (``loop://``); 8N1."""
    import serial

    port: SerialPort = serial.serial_for_url(url, baudrate=baud, bytesize=8, parity="N",
                                             stopbits=1, timeout=IDLE_POLL_S)
    return port


class SerialChannel:
    """Blocking driver of a :class:`SerialConnection` on one port (one thread only)."""

    def __init__(self, port: SerialPort, connection: SerialConnection | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.port = port
        self._clock = clock
        self.connection = connection or SerialConnection(clock)

    def send_unit(self, unit: bytes) -> None:
        """Send one unit and wait for its ACK (or a new frame from the peer, which is
        that ACK: HOST_SPEC §1; the frame stays queued for :meth:`receive_unit`);
        :class:`SerialLinkDown` after 3 retries."""
        self.connection.send(unit)
        self._flush()
        while self.connection.send_state is SendState.AWAITING_ACK:
            self._pump(until=None)
        if self.connection.send_state is SendState.LINK_DOWN:
            self.connection.stats.links_down += 1
            self.connection.sender.reset()
            raise SerialLinkDown("no ACK after the last retransmission")
        self.connection.sender.reset()

    def receive_unit(self, timeout_s: float) -> bytes | None:
        """The next unit received, or ``None`` after ``timeout_s``."""
        deadline = self._clock() + timeout_s
        while (unit := self.connection.next_unit()) is None:
            if self._clock() >= deadline:
                return None
            self._pump(until=deadline)
        return unit

    def discard_received(self) -> int:
        """Drop units already received (stale answers to an earlier exchange)."""
        return self.connection.discard_units()

    def _pump(self, until: float | None) -> None:
        """One read (bounded by the nearest timer), then the timers, then the writes."""
        now = self._clock()
        deadlines = [d for d in (until, self.connection.next_deadline()) if d is not None]
        wait_s = min(deadlines, default=now + IDLE_POLL_S) - now
        self.port.timeout = min(max(wait_s, 0.001), IDLE_POLL_S)
        data = self.port.read(1)
        if data:
            waiting = self.port.in_waiting
            if waiting:
                data += self.port.read(min(waiting, READ_CHUNK_BYTES))
        self.connection.receive_data(data)
        self.connection.poll()
        self._flush()

    def _flush(self) -> None:
        for transmission in self.connection.outgoing():
            self.port.write(transmission)  # one write per frame or control byte
        self.port.flush()


class SerialTransport:
    """``bpnt-switch serve --serial PORT``: one line, one terminal (or a multi-drop
    line where terminals take turns), one thread."""

    def __init__(self, handler: UnitHandler, settings: Settings, *,
                 port: SerialPort | None = None) -> None:
        self._handler = handler
        self._settings = settings
        self._port = port
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.units_handled = 0

    @property
    def line_open(self) -> bool:
        """The port is open and its line thread runs (the metrics read it)."""
        return (self._port is not None and self._thread is not None
                and self._thread.is_alive() and not self._stop.is_set())

    async def start(self) -> str:
        """Open the port and start the line thread; returns the port name."""
        name = self._settings.serial_port or "(given port)"
        if self._port is None:
            assert self._settings.serial_port is not None, "serial_port not configured"
            self._port = open_port(self._settings.serial_port, self._settings.serial_baud)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="serial-line", daemon=True)
        self._thread.start()
        log.info("serial listener on %s at %d baud", name, self._settings.serial_baud)
        return name

    async def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10.0)
        if self._port is not None:
            self._port.close()

    def _run(self) -> None:
        assert self._port is not None
        channel = SerialChannel(self._port)
        last: tuple[bytes, bytes] | None = None
        while not self._stop.is_set():
            try:
                unit = channel.receive_unit(IDLE_POLL_S)
                if unit is None:
                    continue
                if last is not None and unit == last[0]:
                    log.info("repeated frame (lost ACK): same response again")
                    response: bytes | None = last[1]
                else:
                    response = self._call_host(unit)
                if response is None:
                    continue
                last = (unit, response)
                channel.send_unit(response)
                self.units_handled += 1
            except SerialLinkDown:
                log.warning("serial link down: response not acknowledged; the terminal "
                            "will time out and reverse")
            except (OSError, TimeoutError) as exc:
                if self._stop.is_set():
                    return
                log.error("serial port error: %s", exc)
                self._stop.wait(1.0)

    def _call_host(self, unit: bytes) -> bytes | None:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._handler(unit), self._loop)
        return future.result(timeout=self._settings.handler_timeout_s)
