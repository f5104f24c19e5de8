"""The vicc bridge: a `KksCard` behind a real PC/SC reader (pcscd + vsmartcard vpcd).

vpcd, the "Virtual PCD" driver inside pcscd, listens on TCP ``35963 + slot`` and
treats one connected client as a card in that slot (reader ``Virtual PCD 00 0N``).
Its framing: every message is a 2-byte big-endian length and a payload; a 1-byte
payload is control (00 power off, 01 power on, 02 reset, 04 get ATR, answered with
the ATR only for 04), anything longer is a command APDU, answered with a response
APDU.  Closing the connection is pulling the card.

Facts from running it (Debian bookworm, pcscd 1.9, vpcd 0.8): pcscd polls presence
with GET ATR several times a second and power-cycles the card often, so the card's
ATC and PIN try counter live across power cycles (only session state is reset);
vpcd waits for an answer with no timeout, and an empty answer stalls the slot, so
the bridge never sends one and bounds every silence (`FaultPlan.delay_s`).

The bridge runs in one thread; `insert`, `remove`, `swap` and `set_fault` may be
called from any other.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from typing import Final

from card_emulator.card import KksCard
from card_emulator.faults import FaultPlan, Pull, Reply, Silence, respond

__all__ = ["VPCD_BASE_PORT", "ViccBridge", "port_for_slot"]

log = logging.getLogger("bpnt.card_emu.vicc")

#: vpcd's default channel (``/etc/reader.conf.d/vpcd``: CHANNELID 0x8C7B), slot 0.
VPCD_BASE_PORT: Final[int] = 35963
#: vpcd answers with one slot per port; Debian's build configures two.
MAX_SLOTS: Final[int] = 2
#: Largest message either side sends: an extended APDU or response.
MAX_MESSAGE_BYTES: Final[int] = 0xFFFF
_POLL_S: Final[float] = 0.05
_CONNECT_TIMEOUT_S: Final[float] = 1.0
_RETRY_S: Final[float] = 0.2


def port_for_slot(slot: int) -> int:
    """``Virtual PCD 00 0N`` listens on 35963 + N."""
    if not 0 <= slot < MAX_SLOTS:
        raise ValueError(f"vpcd slot must be 0-{MAX_SLOTS - 1}")
    return VPCD_BASE_PORT + slot


class _Removed(Exception):
    """The card in the slot changed (removed or swapped) or the bridge stops."""


class ViccBridge:
    """One vpcd slot with an emulated card that tests and operators insert, pull and swap."""

    def __init__(self, port: int = VPCD_BASE_PORT, host: str = "127.0.0.1",
                 card: KksCard | None = None, plan: FaultPlan | None = None) -> None:
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._card = card
        self._generation = 0
        self._plan = plan or FaultPlan()
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        #: Messages served, for tests and `status` (control bytes included).
        self.messages = 0

    # -- control (any thread) ---------------------------------------------------------

    @property
    def card(self) -> KksCard | None:
        return self._card

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    def set_fault(self, plan: FaultPlan) -> None:
        """Switch a fault on (or off with ``FaultPlan()``); applies from the next message."""
        self._plan = plan
        log.info("slot port %d: fault %s", self.port, plan.fault.value)

    def insert(self, card: KksCard) -> None:
        """Put a card in the slot; a chipless (magstripe) card is not seen by the reader."""
        self.swap(card)

    def remove(self) -> KksCard | None:
        """Pull the card (close the connection); returns it so it can go back in."""
        return self.swap(None)

    def swap(self, card: KksCard | None) -> KksCard | None:
        with self._lock:
            old, self._card = self._card, card
            self._generation += 1
        self._changed.set()
        if card is None or card.profile.kind != "chip":
            self._connected.clear()
        return old

    def wait_presented(self, timeout_s: float) -> bool:
        """Wait until vpcd accepted the card's connection (pcscd sees it on its next poll)."""
        return self._connected.wait(timeout_s)

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> ViccBridge:
        assert self._thread is None, "bridge already started"
        self._thread = threading.Thread(target=self._run, name=f"vicc-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            assert not self._thread.is_alive(), "vicc bridge did not stop"
            self._thread = None

    def __enter__(self) -> ViccBridge:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- the bridge thread ----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                card, generation = self._card, self._generation
                self._changed.clear()
            if card is None or card.profile.kind != "chip":
                self._changed.wait(_POLL_S * 4)
                continue
            sock = self._connect()
            if sock is None:
                self._changed.wait(_RETRY_S)  # pcscd not (yet) running: retry, bounded
                continue
            log.info("card %s in slot port %d", card.profile.masked_pan, self.port)
            self._connected.set()
            try:
                self._serve(sock, card, generation)
            except _Removed:
                pass
            except OSError as exc:
                log.info("slot port %d: connection lost: %s", self.port, exc)
            finally:
                self._connected.clear()
                sock.close()

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection((self.host, self.port), _CONNECT_TIMEOUT_S)
        except OSError:
            return None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _check(self, generation: int) -> None:
        if self._stop.is_set() or self._generation != generation:
            raise _Removed

    def _sleep(self, seconds: float, generation: int) -> None:
        """Sleep, but give up at once when the card is pulled or the bridge stops."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._check(generation)
            self._changed.wait(min(left, _POLL_S))
        self._check(generation)

    def _serve(self, sock: socket.socket, card: KksCard, generation: int) -> None:
        buffer = bytearray()
        while True:
            self._check(generation)
            readable, _, _ = select.select([sock], [], [], _POLL_S)
            if not readable:
                continue
            data = sock.recv(4096)
            if not data:
                log.info("slot port %d: vpcd closed the connection", self.port)
                return
            buffer += data
            while len(buffer) >= 2:
                size = int.from_bytes(buffer[:2], "big")
                if len(buffer) < 2 + size:
                    break
                payload = bytes(buffer[2 : 2 + size])
                del buffer[: 2 + size]
                self.messages += 1
                if not self._answer(sock, card, payload, generation):
                    return

    def _answer(self, sock: socket.socket, card: KksCard, payload: bytes, generation: int) -> bool:
        """Carry out the card's answer; False when the connection must close."""
        if not payload:
            return True  # vpcd never sends one; nothing sensible to answer
        outcome = respond(card, self._plan, payload)
        if isinstance(outcome, Reply):
            if outcome.delay_s:
                self._sleep(outcome.delay_s, generation)
            sock.sendall(len(outcome.data).to_bytes(2, "big") + outcome.data)
        elif isinstance(outcome, Silence):
            log.info("slot port %d: mute card, holding %.1f s", self.port, outcome.hold_s)
            self._sleep(outcome.hold_s, generation)
            return False  # the reader gives up: the card is deactivated, then seen again
        elif isinstance(outcome, Pull):
            log.info("slot port %d: card pulled during GENERATE AC", self.port)
            with self._lock:
                if self._generation == generation:
                    self._card = None
                    self._generation += 1
            return False
        return True
