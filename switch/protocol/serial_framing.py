"""Serial framing: STX + BCD length + unit + ETX + LRC, with ACK/NAK (HOST_SPEC §1).  Sans-IO.

Three pieces, none of which touches a port or a clock of its own:

- :func:`frame_serial` / :func:`lrc`: build a frame;
- :class:`SerialDeframer`: feed bytes in any slicing, take out events
  (a whole frame, an ACK, a NAK, or a bad frame to be answered with NAK);
- :class:`SerialSender`: the sender's retry state machine (retransmit on NAK or
  when no ACK arrives in 2 s, at most 3 times, then link down), on an injectable
  clock; :class:`SerialConnection` joins both into one endpoint of the line.

A sender waiting for its ACK that receives a *new* valid frame from its peer takes it as
that ACK (HOST_SPEC §1, version 1.1): the peer sends its next frame (the switch its
response, the terminal its next request) only once it has ours, or has given up on it
and no longer wants it.  A lost ACK then costs no retransmission and no 2 s wait.
"New" is :class:`SerialConnection`'s call, since the sender sees only its own frame:
a frame identical to the last one received is the peer's retransmission, which it may
have sent before ours arrived, so it is no ACK; nor is a bad frame (it is NAKed).

>>> frame = frame_serial(b"\\x60\\x00\\x01\\x00\\x00")
>>> frame.hex(" ")
'02 00 05 60 00 01 00 00 03 67'
>>> d = SerialDeframer()
>>> d.receive_data(b"\\x06" + frame[:4])
>>> d.next_event(), d.next_event()
(AckReceived(), None)
>>> d.receive_data(frame[4:])
>>> d.next_event()
FrameReceived(unit=b'`\\x00\\x01\\x00\\x00')
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from switch.protocol.errors import FramingError
from switch.protocol.framing import MAX_UNIT_BYTES

STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15
#: HOST_SPEC §1: the sender waits 2 s for an ACK ...
ACK_TIMEOUT_S = 2.0
#: ... and retransmits at most 3 times before it reports the link down.
MAX_RETRANSMITS = 3
#: A frame whose bytes stop arriving for this long is given up (and NAKed): a dropped
#: byte then costs a quick NAK and retransmission rather than a stalled receiver.  A
#: damaged frame is NAKed once the line has been this long quiet after it.
INTER_BYTE_TIMEOUT_S = 0.5
#: Frames received but not yet taken by the application (TIGER_STYLE: a bound).
MAX_QUEUED_UNITS = 16
_HEADER_BYTES = 3  # STX + 2 length bytes
_TRAILER_BYTES = 2  # ETX + LRC


def lrc(data: bytes | bytearray) -> int:
    """XOR of every byte (HOST_SPEC §1: over length + unit + ETX).

    >>> lrc(b"\\x00\\x01\\x41\\x03")
    67
    """
    value = 0
    for byte in data:
        value ^= byte
    return value


def _bcd_length(length: int) -> bytes:
    return bytes.fromhex(f"{length:04d}")


def frame_serial(unit: bytes, *, max_unit_bytes: int = MAX_UNIT_BYTES) -> bytes:
    if not 0 < len(unit) <= max_unit_bytes:
        raise FramingError(f"unit of {len(unit)} bytes cannot be framed")
    body = _bcd_length(len(unit)) + unit + bytes([ETX])
    return bytes([STX]) + body + bytes([lrc(body)])


@dataclass(frozen=True)
class FrameReceived:
    unit: bytes


@dataclass(frozen=True)
class AckReceived:
    pass


@dataclass(frozen=True)
class NakReceived:
    pass


@dataclass(frozen=True)
class BadFrame:
    """A frame with a bad length, ETX or LRC, or one that stalled: answer NAK."""

    reason: str


Event = FrameReceived | AckReceived | NakReceived | BadFrame


class SerialDeframer:
    """Incremental deframer.  Bytes outside a frame other than ACK/NAK are line noise
    and skipped.

    A damaged frame (bad length, no ETX where the length says, LRC mismatch) costs
    one NAK, and nothing in it is read as anything else: everything received is dropped
    until the line goes quiet (:meth:`expire`, after the inter-byte timeout), and only
    then is the frame NAKed.  A unit's bytes include STX, ACK and NAK values (binary
    bitmap and DE 55, BCD digits), so restarting at the next STX inside a damaged frame
    gave a NAK per fragment (each one used up one of the sender's 3 retransmissions), a
    false length that swallowed the retransmission, or a false ACK.  Waiting for the
    quiet also keeps the retransmission the NAK asks for from arriving into the remains
    of the damaged frame.  A frame that stalls (a byte lost) is dropped whole on
    :meth:`expire` and NAKed.
    """

    def __init__(self, *, max_unit_bytes: int = MAX_UNIT_BYTES) -> None:
        self._buffer = bytearray()
        self._max_unit_bytes = max_unit_bytes
        self.noise_bytes = 0
        #: Why bytes are being dropped until the line is quiet (``None``: they are not).
        self._discarding: str | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete frame, or 1 while a damaged frame's remains are being
        dropped (the inter-byte timer runs while > 0)."""
        return len(self._buffer) or (1 if self._discarding is not None else 0)

    def receive_data(self, data: bytes) -> None:
        if self._discarding is not None:
            self.noise_bytes += len(data)
            return
        self._buffer += data
        # Bounded: one frame plus what a single read can add.
        assert len(self._buffer) <= 4 * (self._max_unit_bytes + 8) + len(data)

    def next_event(self) -> Event | None:
        while self._buffer:
            first = self._buffer[0]
            if first == ACK:
                del self._buffer[0]
                return AckReceived()
            if first == NAK:
                del self._buffer[0]
                return NakReceived()
            if first != STX:
                del self._buffer[0]
                self.noise_bytes += 1
                continue
            return self._frame()
        return None

    def _frame(self) -> Event | None:
        if len(self._buffer) < _HEADER_BYTES:
            return None
        digits = self._buffer[1:_HEADER_BYTES].hex()
        if not digits.isdigit() or not 0 < int(digits) <= self._max_unit_bytes:
            self._discard(f"length {digits!r} is not BCD in 1..{self._max_unit_bytes}")
            return None
        length = int(digits)
        end = _HEADER_BYTES + length + _TRAILER_BYTES
        if len(self._buffer) < end:
            return None
        if self._buffer[end - 2] != ETX:
            self._discard("no ETX where the length says")
            return None
        if lrc(self._buffer[1 : end - 1]) != self._buffer[end - 1]:
            self._discard("LRC mismatch")
            return None
        unit = bytes(self._buffer[_HEADER_BYTES : end - 2])
        del self._buffer[:end]
        return FrameReceived(unit)

    def _discard(self, reason: str) -> None:
        """Drop what is held and all that follows until :meth:`expire` (the line quiet),
        which reports the damaged frame."""
        self.noise_bytes += len(self._buffer)
        self._buffer.clear()
        self._discarding = reason

    def expire(self) -> BadFrame | None:
        """The line went quiet: a damaged frame's remains are gone (NAK it now), or a
        frame stopped in the middle (give it up: NAK); stray noise is dropped."""
        if self._discarding is not None:
            reason, self._discarding = self._discarding, None
            return BadFrame(reason)
        if not self._buffer:
            return None
        stalled = self._buffer[0] == STX
        self.noise_bytes += len(self._buffer)
        self._buffer.clear()
        return BadFrame("frame stalled") if stalled else None


class SendState(enum.Enum):
    IDLE = "idle"
    AWAITING_ACK = "awaiting ACK"
    DELIVERED = "delivered"
    LINK_DOWN = "link down"


class SerialSender:
    """The sender's state machine, one frame at a time (HOST_SPEC §1).

    ``start`` returns the frame to write; ``on_nak`` and ``poll`` return a frame to
    write again, or ``None`` (nothing to do, or the link is down: see ``state``).
    ``on_ack`` and ``on_peer_frame`` (a new frame from the peer, taken as the ACK) end
    the wait: the frame is delivered and nothing is retransmitted.

    >>> clock = lambda: 0.0
    >>> sender = SerialSender(clock)
    >>> sender.start(b"unit") == frame_serial(b"unit")
    True
    >>> sender.on_peer_frame(), sender.state, sender.deadline
    (True, <SendState.DELIVERED: 'delivered'>, None)
    >>> sender.on_peer_frame()  # nothing awaited: an ordinary frame
    False
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, *,
                 ack_timeout_s: float = ACK_TIMEOUT_S,
                 max_retransmits: int = MAX_RETRANSMITS) -> None:
        self._clock = clock
        self.ack_timeout_s = ack_timeout_s
        self.max_retransmits = max_retransmits
        self.state = SendState.IDLE
        self.retransmits = 0
        self._frame = b""
        self.deadline: float | None = None

    def start(self, unit: bytes) -> bytes:
        assert self.state is not SendState.AWAITING_ACK, "one frame at a time"
        self._frame = frame_serial(unit)
        self.state = SendState.AWAITING_ACK
        self.retransmits = 0
        self.deadline = self._clock() + self.ack_timeout_s
        return self._frame

    def on_ack(self) -> None:
        if self.state is SendState.AWAITING_ACK:  # a stray ACK when idle is ignored
            self.state = SendState.DELIVERED
            self.deadline = None

    def on_peer_frame(self) -> bool:
        """The peer sent a new valid frame: it got ours (HOST_SPEC §1), as if ACKed.

        The caller decides what is new (not a repeat of the peer's last frame, not a
        bad frame).  Returns whether it ended a wait for an ACK.
        """
        if self.state is not SendState.AWAITING_ACK:
            return False
        self.on_ack()
        return True

    def on_nak(self) -> bytes | None:
        if self.state is not SendState.AWAITING_ACK:
            return None
        return self._retransmit()

    def poll(self) -> bytes | None:
        if self.state is SendState.AWAITING_ACK and self.deadline is not None \
                and self._clock() >= self.deadline:
            return self._retransmit()
        return None

    def _retransmit(self) -> bytes | None:
        if self.retransmits >= self.max_retransmits:
            self.state = SendState.LINK_DOWN
            self.deadline = None
            return None
        self.retransmits += 1
        self.deadline = self._clock() + self.ack_timeout_s
        return self._frame

    def reset(self) -> None:
        self.state = SendState.IDLE
        self.deadline = None


@dataclass
class LineStats:
    frames_received: int = 0
    bad_frames: int = 0
    naks_received: int = 0
    #: A new frame from the peer taken as the ACK of ours (HOST_SPEC §1).
    implicit_acks: int = 0
    retransmits: int = 0
    links_down: int = 0


class SerialConnection:
    """One end of the line: answers frames with ACK/NAK, retransmits its own frame.

    ``receive_data`` and ``poll`` queue writes; take them with ``outgoing()`` (one
    entry per transmission: a frame or a control byte) and received units with
    ``next_unit()``.  ``next_deadline()`` says when ``poll`` must run next.

    While its own frame awaits an ACK, a valid frame from the peer that differs from
    the last one received is that ACK (HOST_SPEC §1): the sender stops retransmitting
    and reports the frame delivered; the new frame is ACKed and queued as usual.  A
    repeat of the peer's last frame (its retransmission, perhaps sent before ours
    arrived) and a bad frame are not ACKs.  Every frame received, repeat or not, is
    still ACKed and handed to the application (which may answer a repeat from a cache).

    >>> clock = lambda: 0.0
    >>> switch, terminal = SerialConnection(clock), SerialConnection(clock)
    >>> terminal.send(b"request 1")
    >>> switch.receive_data(b"".join(terminal.outgoing()))
    >>> switch.send(b"response 1")
    >>> terminal.receive_data(b"".join(switch.outgoing()))  # ACK, then the response
    >>> terminal.next_unit(), terminal.outgoing()  # this ACK is lost on the line
    (b'response 1', [b'\\x06'])
    >>> terminal.send(b"request 2")
    >>> switch.receive_data(b"".join(terminal.outgoing()))
    >>> switch.send_state, switch.stats.implicit_acks, switch.outgoing()
    (<SendState.DELIVERED: 'delivered'>, 1, [b'\\x06'])
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, *,
                 ack_timeout_s: float = ACK_TIMEOUT_S, max_retransmits: int = MAX_RETRANSMITS,
                 inter_byte_timeout_s: float = INTER_BYTE_TIMEOUT_S,
                 max_unit_bytes: int = MAX_UNIT_BYTES) -> None:
        self._clock = clock
        self.sender = SerialSender(clock, ack_timeout_s=ack_timeout_s,
                                   max_retransmits=max_retransmits)
        self._deframer = SerialDeframer(max_unit_bytes=max_unit_bytes)
        self._inter_byte_timeout_s = inter_byte_timeout_s
        self._last_rx: float | None = None
        self._outgoing: list[bytes] = []
        self._units: deque[bytes] = deque(maxlen=MAX_QUEUED_UNITS)
        #: The last unit received whole: a frame equal to it is a repeat, no ACK of ours.
        self._last_unit_received: bytes | None = None
        self.stats = LineStats()

    @property
    def send_state(self) -> SendState:
        return self.sender.state

    def send(self, unit: bytes) -> None:
        self._outgoing.append(self.sender.start(unit))

    def receive_data(self, data: bytes) -> None:
        if data:
            self._last_rx = self._clock()
            self._deframer.receive_data(data)
        while (event := self._deframer.next_event()) is not None:
            self._handle(event)

    def poll(self) -> None:
        """Run the timers: ACK timeout (retransmit / link down), stalled frame (NAK)."""
        self._after_send_event(self.sender.poll())
        if self._deframer.pending_bytes and self._last_rx is not None \
                and self._clock() - self._last_rx >= self._inter_byte_timeout_s:
            expired = self._deframer.expire()
            if expired is not None:
                self._handle(expired)

    def next_deadline(self) -> float | None:
        deadlines = [self.sender.deadline] if self.sender.deadline is not None else []
        if self._deframer.pending_bytes and self._last_rx is not None:
            deadlines.append(self._last_rx + self._inter_byte_timeout_s)
        return min(deadlines, default=None)

    def outgoing(self) -> list[bytes]:
        out, self._outgoing = self._outgoing, []
        return out

    def next_unit(self) -> bytes | None:
        return self._units.popleft() if self._units else None

    def discard_units(self) -> int:
        count = len(self._units)
        self._units.clear()
        return count

    def _handle(self, event: Event) -> None:
        if isinstance(event, FrameReceived):
            self.stats.frames_received += 1
            if event.unit != self._last_unit_received and self.sender.on_peer_frame():
                self.stats.implicit_acks += 1
            self._last_unit_received = event.unit
            self._outgoing.append(bytes([ACK]))
            self._units.append(event.unit)
        elif isinstance(event, BadFrame):
            self.stats.bad_frames += 1
            self._outgoing.append(bytes([NAK]))
        elif isinstance(event, AckReceived):
            self.sender.on_ack()
        else:
            self.stats.naks_received += 1
            self._after_send_event(self.sender.on_nak())

    def _after_send_event(self, frame: bytes | None) -> None:
        if frame is not None:
            self.stats.retransmits += 1
            self._outgoing.append(frame)
