"""A noisy null-modem cable between two processes: two pty pairs and a relay.

The switch (``bpnt-switch serve --serial PATH``) opens one pty's slave, the EDC the
other's; :class:`NoisyCable` copies bytes between the two masters, one thread per
direction, at the line's pace (8N1: ``baud / 10`` bytes a second, each direction on
its own, as on a full-duplex RS-232 line) and flips one bit of each byte with
probability ``byte_error_rate`` (changeable while running: the line "recovers").
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
import tty
from dataclasses import dataclass

from terminal_sim.links.serial import BITS_PER_BYTE

#: Bytes moved at a time: 16 bytes is 17 ms at 9600 baud, well inside the 0.5 s
#: inter-byte timeout, so the far end sees bytes arrive as from a real line.
CHUNK_BYTES = 16
#: How often each relay thread looks at its stop flag while the line is idle.
IDLE_POLL_S = 0.05


@dataclass
class Direction:
    """What went one way along the cable."""

    name: str
    bytes_carried: int = 0
    bytes_corrupted: int = 0


class _End:
    """One pty pair: the master is the cable's, the slave a tty a process opens."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # raw before anyone opens it: no echo, no line editing
        self.path = os.ttyname(self._slave)

    def close(self) -> None:
        os.close(self.master)
        os.close(self._slave)


class NoisyCable:
    """``switch_path`` and ``terminal_path`` are the two ends; start, then open them."""

    def __init__(self, *, baud: int, byte_error_rate: float = 0.0, seed: int = 1) -> None:
        assert baud > 0 and 0.0 <= byte_error_rate <= 1.0
        self.baud = baud
        self.byte_error_rate = byte_error_rate
        self._switch_end, self._terminal_end = _End(), _End()
        self.switch_path, self.terminal_path = self._switch_end.path, self._terminal_end.path
        self.to_switch = Direction("terminal → switch")
        self.to_terminal = Direction("switch → terminal")
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._relay, name="cable-to-switch", daemon=True, args=(
                self._terminal_end.master, self._switch_end.master, self.to_switch,
                random.Random(seed))),
            threading.Thread(target=self._relay, name="cable-to-terminal", daemon=True,
                             args=(self._switch_end.master, self._terminal_end.master,
                                   self.to_terminal, random.Random(seed + 1))),
        ]

    def start(self) -> NoisyCable:
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5.0)
        self._switch_end.close()
        self._terminal_end.close()

    @property
    def bytes_carried(self) -> int:
        return self.to_switch.bytes_carried + self.to_terminal.bytes_carried

    @property
    def bytes_corrupted(self) -> int:
        return self.to_switch.bytes_corrupted + self.to_terminal.bytes_corrupted

    def _relay(self, source: int, sink: int, direction: Direction,
               rng: random.Random) -> None:
        byte_s = BITS_PER_BYTE / self.baud
        line_free_at = time.monotonic()
        while not self._stop.is_set():
            ready, _, _ = select.select([source], [], [], IDLE_POLL_S)
            if not ready:
                continue
            try:
                chunk = bytearray(os.read(source, CHUNK_BYTES))
            except OSError:  # the far end's slave closed and reopened: no data lost yet
                self._stop.wait(IDLE_POLL_S)
                continue
            rate = self.byte_error_rate
            for pos in range(len(chunk)):
                if rate and rng.random() < rate:
                    chunk[pos] ^= 1 << rng.randrange(8)
                    direction.bytes_corrupted += 1
            # The line carries one byte every byte_s: this chunk's last byte is out then.
            line_free_at = max(line_free_at, time.monotonic()) + len(chunk) * byte_s
            delay_s = line_free_at - time.monotonic()
            if delay_s > 0:
                time.sleep(delay_s)  # the line's own time, not a wait for anything
            os.write(sink, bytes(chunk))
            direction.bytes_carried += len(chunk)
