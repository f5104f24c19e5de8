"""The EDC's serial link (HOST_SPEC §1: STX/length/unit/ETX/LRC, ACK/NAK, 3 retries).

The framing and retry state machine are the sans-IO core
(:mod:`switch.protocol.serial_framing`), driven by the same
:class:`~switch.transports.serial.SerialChannel` the switch uses.

Error mapping for the EDC: the request never ACKed after 3 retransmissions →
:class:`LinkDown` (it may have arrived: the EDC keeps the reversal pending); ACKed but
no response in time → :class:`LinkTimeout`.  A response that arrives while the request
still awaits its ACK is that ACK (HOST_SPEC §1): the request is not sent again.

:class:`NoisyPort` is the fault injection: it damages a set share of transmissions
(a bit flipped or a byte dropped) or of bytes (a bit flipped), optionally at a real
line's pace (9600 baud: 960 bytes/s), and its rates can be changed while running (the
line "recovers").
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


#: 8N1: a start bit, 8 data bits and a stop bit on the wire for every byte.
BITS_PER_BYTE = 10


class NoisyPort(PortWrapper):
    """A serial port whose line damages what is written, paced like a real line.

    - ``rate``: each transmission (one ``write``: a frame or an ACK/NAK byte) is damaged
      with this probability: one bit flipped or one byte dropped;
    - ``byte_error_rate``: each byte written has one bit flipped with this probability
      (a 215-byte frame at 0.01 arrives intact 0.99**215 ≈ 11.5 % of the time);
    - ``baud``: each write takes the line's time first (:data:`BITS_PER_BYTE` bits a
      byte: 960 bytes/s at 9600), so the far end has the last byte when a real line
      would have delivered it.

    Both rates can be changed while running (the line "recovers").
    """

    def __init__(self, inner: SerialPort, rate: float, *, seed: int | None = None,
                 baud: int | None = None, byte_error_rate: float = 0.0) -> None:
        assert 0.0 <= rate <= 1.0 and 0.0 <= byte_error_rate <= 1.0
        super().__init__(inner)
        self.rate = rate
        self.byte_error_rate = byte_error_rate
        self.baud = baud
        self._rng = random.Random(seed)
        self.damaged = 0
        self.transmissions = 0
        self.bytes_written = 0
        self.bytes_corrupted = 0
        #: Seconds spent on the wire (pacing).
        self.line_s = 0.0

    def write(self, data: bytes, /) -> int | None:
        self.transmissions += 1
        damaged = bytes(data)
        if damaged and self.rate and self._rng.random() < self.rate:
            damaged = self._damage(damaged)
        if damaged and self.byte_error_rate:
            damaged = self._corrupt_bytes(damaged)
        if damaged != data:
            self.damaged += 1
        self.bytes_written += len(damaged)
        if self.baud:
            wire_s = len(damaged) * BITS_PER_BYTE / self.baud
            self.line_s += wire_s
            time.sleep(wire_s)  # the line's own time, not a wait for anything
        self.inner.write(damaged)
        return len(data)

    def _damage(self, data: bytes) -> bytes:
        pos = self._rng.randrange(len(data))
        if self._rng.random() < 0.5:
            return data[:pos] + data[pos + 1 :]
        flipped = data[pos] ^ (1 << self._rng.randrange(8))
        return data[:pos] + bytes([flipped]) + data[pos + 1 :]

    def _corrupt_bytes(self, data: bytes) -> bytes:
        out = bytearray(data)
        for pos in range(len(out)):
            if self._rng.random() < self.byte_error_rate:
                out[pos] ^= 1 << self._rng.randrange(8)
                self.bytes_corrupted += 1
        return bytes(out)
