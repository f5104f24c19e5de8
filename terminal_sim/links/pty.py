"""A null-modem cable inside one process: the two ends of a pseudo-terminal pair.

The slave side is a real tty that pyserial opens by name (the terminal's end, as an EDC
would open ``/dev/ttyUSB0``); the master side is wrapped as a serial port for the switch
(:class:`PtyMasterPort`).  Used by the serial tests and by
:mod:`terminal_sim.serial_noise`.
"""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import serial

#: How long a read waits for a byte unless the channel asks otherwise.
READ_TIMEOUT_S = 0.2


class PtyMasterPort:
    """The master side of ``os.openpty`` as a serial port (``SerialPort``)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.timeout: float | None = READ_TIMEOUT_S

    @property
    def in_waiting(self) -> int:
        ready, _, _ = select.select([self.fd], [], [], 0)
        return 4096 if ready else 0

    def read(self, size: int = 1) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        return os.read(self.fd, size) if ready else b""

    def write(self, data: bytes, /) -> int:
        return os.write(self.fd, data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class PtyPair:
    switch_port: PtyMasterPort
    terminal_path: str
    _slave_fd: int

    def close(self) -> None:
        os.close(self._slave_fd)


@contextmanager
def pty_pair() -> Iterator[PtyPair]:
    """A pty pair; the switch's end is open, the terminal's is a path to open."""
    master, slave = os.openpty()
    pair = PtyPair(PtyMasterPort(master), os.ttyname(slave), slave)
    try:
        yield pair
    finally:
        pair.close()


def open_terminal_port(path: str, baud: int = 9600) -> serial.Serial:
    """The terminal's end, 8N1 (a pty ignores the baud rate: pace with NoisyPort)."""
    return serial.Serial(path, baudrate=baud, bytesize=8, parity="N", stopbits=1,
                         timeout=READ_TIMEOUT_S)
