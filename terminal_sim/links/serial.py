"""The EDC's serial link (HOST_SPEC §1: STX/length/unit/ETX/LRC, ACK/NAK, 3 retries).

The framing and retry state machine are the sans-IO core
(:mod:`switch.protocol.serial_framing`), driven by the same
:class:`~switch.transports.serial.SerialChannel` the switch uses.

Error mapping for the EDC: the request never ACKed after 3 retransmissions →
:class:`LinkDown` (it may have arrived: the EDC keeps the reversal pending); ACKed but
no response in time → :class:`LinkTimeout`.  A response that arrives while the request
still awaits its ACK is that ACK (HOST_SPEC §1): the request is not sent again.

:class:`NoisyPort` is the fault injection: it damages a set share of transmissions
(a bit flipped or a byte dropped), and its rate can be changed while running (the line
"recovers").
"""

from __future__ import annotations

import logging
import random
import time

from switch.transports.serial import SerialChannel, SerialLinkDown, SerialPort, open_port
from terminal_sim.link import LinkDown, LinkTimeout
from terminal_sim.links.matching import answers

log = logging.getLogger("bpnt.edc.serial")


class SerialLink:
    def __init__(self, port: SerialPort) -> None:
        self.channel = SerialChannel(port)
        self.port = port

    @classmethod
    def open(cls, url: str, *, baud: int = 9600, noise_rate: float = 0.0) -> SerialLink:
        port = open_port(url, baud)
        return cls(NoisyPort(port, noise_rate) if noise_rate else port)

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        if stale := self.channel.discard_received():
            log.info("dropped %d stale unit(s)", stale)
        try:
            self.channel.send_unit(unit)
        except SerialLinkDown as exc:
            raise LinkDown(f"serial link down: {exc}") from exc
        except OSError as exc:
            raise LinkDown(f"serial port error: {exc}") from exc
        while (remaining_s := deadline - time.monotonic()) > 0:
            try:
                response = self.channel.receive_unit(remaining_s)
            except OSError as exc:
                raise LinkDown(f"serial port error: {exc}") from exc
            if response is None:
                break
            if answers(unit, response):
                return response
            log.info("dropped a stale response")
        raise LinkTimeout(f"no response in {timeout_s:.1f} s")

    def close(self) -> None:
        self.port.close()


class PortWrapper:
    """A serial port that passes everything to ``inner``; subclasses change ``write``
    (a noisy line, a tapped one in the tests)."""

    def __init__(self, inner: SerialPort) -> None:
        self.inner = inner

    @property
    def timeout(self) -> float | None:
        return self.inner.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self.inner.timeout = value

    @property
    def in_waiting(self) -> int:
        return self.inner.in_waiting

    def read(self, size: int = 1) -> bytes:
        return self.inner.read(size)

    def write(self, data: bytes, /) -> int | None:
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()


class NoisyPort(PortWrapper):
    """A serial port whose line damages each transmission (one ``write``: a frame or
    an ACK/NAK byte) with probability ``rate``: one bit flipped or one byte dropped.

    Optionally paced at ``baud`` (10 bits a byte, 8N1) to take a real line's time.
    """

    def __init__(self, inner: SerialPort, rate: float, *, seed: int | None = None,
                 baud: int | None = None) -> None:
        assert 0.0 <= rate <= 1.0
        super().__init__(inner)
        self.rate = rate
        self.baud = baud
        self._rng = random.Random(seed)
        self.damaged = 0
        self.transmissions = 0

    def write(self, data: bytes, /) -> int | None:
        self.transmissions += 1
        if data and self._rng.random() < self.rate:
            self.damaged += 1
            data = self._damage(data)
        if self.baud:
            time.sleep(len(data) * 10 / self.baud)
        return self.inner.write(data)

    def _damage(self, data: bytes) -> bytes:
        pos = self._rng.randrange(len(data))
        if self._rng.random() < 0.5:
            return data[:pos] + data[pos + 1 :]
        flipped = data[pos] ^ (1 << self._rng.randrange(8))
        return data[:pos] + bytes([flipped]) + data[pos + 1 :]

