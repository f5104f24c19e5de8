"""Serial over pyserial: ``loop://``, pseudo-terminal pairs, and a noisy line (HOST_SPEC §1)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import serial

from switch.host.runner import AsyncHost
from switch.protocol.bpnt import BasketLine
from switch.protocol.serial_framing import ACK, ACK_TIMEOUT_S, STX
from switch.protocol.unit import decode_unit
from switch.transports.serial import SerialChannel, SerialPort, SerialTransport
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.links import make_link
from terminal_sim.links.pty import open_terminal_port, pty_pair
from terminal_sim.links.serial import NoisyPort, PortWrapper, SerialLink
from tests.transports.conftest import LoopThread
from tests.world import PERIOD_SEN, HostWorld

SPINACH = BasketLine("SYR001", 1, 300_000)


def test_loop_url_carries_a_frame_and_its_ack() -> None:
    """pyserial's ``loop://`` echoes what is written: the channel receives its own frame,
    which (new to it) is the ACK it waits for (HOST_SPEC §1), and ACKs it; the echoed
    ACK then finds nothing awaited."""
    port = serial.serial_for_url("loop://", timeout=0.2)
    channel = SerialChannel(port)
    unit = bytes(range(256)) * 3
    channel.send_unit(unit)
    assert channel.receive_unit(1.0) == unit
    assert channel.connection.stats.retransmits == 0
    port.close()


def test_make_link_opens_serial_urls_with_options() -> None:
    link = make_link("serial:loop://?baud=9600&noise=0.5", "EDC00001")
    assert isinstance(link, SerialLink) and isinstance(link.port, NoisyPort)
    assert link.port.rate == 0.5
    link.close()


@dataclass
class NoisyLine:
    edc: Edc
    terminal_side: NoisyPort
    switch_side: NoisyPort
    transport: SerialTransport
    screen: list[str]

    def set_rate(self, rate: float) -> None:
        self.terminal_side.rate = self.switch_side.rate = rate

    def set_byte_error_rate(self, rate: float) -> None:
        self.terminal_side.byte_error_rate = self.switch_side.byte_error_rate = rate


@contextmanager
def noisy_line(world: HostWorld, rate: float, seed: int) -> Iterator[NoisyLine]:
    """Switch and EDC on the two ends of a pty pair at 9600 baud, both sides noisy."""
    loop = LoopThread()
    host = AsyncHost(world.host)
    with pty_pair() as pair:
        switch_side = NoisyPort(pair.switch_port, rate, seed=seed)
        transport = SerialTransport(host.handle, world.host.settings, port=switch_side)
        loop.run(transport.start())
        terminal_side = NoisyPort(open_terminal_port(pair.terminal_path), rate, seed=seed + 1)
        terminal = world.terminal()
        screen: list[str] = []
        edc = Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk, timeout_s=10.0),
                  SerialLink(terminal_side), EmulatedReader(), clock=world.clock,
                  on_screen=screen.append)
        try:
            yield NoisyLine(edc, terminal_side, switch_side, transport, screen)
        finally:
            loop.run(transport.close())
            terminal_side.close()
            host.close()
            loop.stop()


class TappedPort(PortWrapper):
    """A port that records each frame written (with when), and drops the next ACK
    written when ``drop_next_ack`` is set: an ACK lost on the line."""

    def __init__(self, inner: SerialPort) -> None:
        super().__init__(inner)
        self.frames: list[tuple[float, bytes]] = []
        self.drop_next_ack = False
        self.acks_dropped = 0

    def write(self, data: bytes, /) -> int | None:
        if data == bytes([ACK]) and self.drop_next_ack:
            self.drop_next_ack = False
            self.acks_dropped += 1
            return len(data)
        if data[:1] == bytes([STX]):
            self.frames.append((time.monotonic(), data))
        return self.inner.write(data)

    def mtis(self, since: int = 0) -> list[str]:
        return [decode_unit(frame[3:-2]).message.mti for _, frame in self.frames[since:]]


def test_next_request_is_the_ack_of_a_response_whose_ack_was_lost(world: HostWorld) -> None:
    """HOST_SPEC §1: the terminal's ACK of a purchase response is lost; its next request
    (a balance inquiry) is taken by the switch as that ACK.  The switch writes the
    purchase response once (no retransmission, even after the 2 s an ACK may take) and
    answers the inquiry at once, not after a retransmission."""
    loop = LoopThread()
    host = AsyncHost(world.host)
    with pty_pair() as pair:
        switch_side = TappedPort(pair.switch_port)
        transport = SerialTransport(host.handle, world.host.settings, port=switch_side)
        loop.run(transport.start())
        terminal_side = TappedPort(open_terminal_port(pair.terminal_path))
        terminal, card = world.terminal(), world.card()
        edc = Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk, timeout_s=10.0),
                  SerialLink(terminal_side), EmulatedReader(), clock=world.clock)
        try:
            assert edc.ensure_logged_on()
            world.insert(edc, card)
            before_switch, before_terminal = len(switch_side.frames), len(terminal_side.frames)
            terminal_side.drop_next_ack = True  # the ACK of the purchase response
            assert edc.purchase([SPINACH], card.pin).approved
            assert terminal_side.acks_dropped == 1 and not terminal_side.drop_next_ack
            started = time.monotonic()
            inquiry = edc.balance_inquiry(card.pin)
            answered_s = time.monotonic() - started
            assert inquiry.approved, inquiry
            assert terminal_side.mtis(before_terminal) == ["0200", "0100"]
            assert switch_side.mtis(before_switch) == ["0210", "0110"]  # 0210 once
            response_at = switch_side.frames[before_switch][0]
            request_at = terminal_side.frames[-1][0]
            # Precondition (not a guess): the inquiry left before the purchase response's
            # ACK was due; otherwise a retransmission at 2 s would be within the rules.
            assert request_at - response_at < ACK_TIMEOUT_S, "too slow for this test"
            assert answered_s < ACK_TIMEOUT_S, f"inquiry answered after {answered_s:.2f} s"
            # Had the purchase response been waiting for its ACK still, it would be sent
            # again within 2 s: wait out that bound, then count the frames again.
            time.sleep(ACK_TIMEOUT_S + 0.5)
            assert switch_side.mtis(before_switch) == ["0210", "0110"]
        finally:
            loop.run(transport.close())
            terminal_side.close()
            host.close()
            loop.stop()
    assert world.balance_sen(card) == PERIOD_SEN - SPINACH.total_sen


def test_a_response_is_the_ack_of_a_request_whose_ack_was_lost(world: HostWorld) -> None:
    """HOST_SPEC §1, the EDC's end: the switch's ACK of a purchase request is lost; the
    purchase response that follows is taken by the EDC as that ACK.  The EDC writes the
    request once (no retransmission when the 2 s for its ACK run out) and its purchase
    ends as soon as the response is in."""
    loop = LoopThread()
    host = AsyncHost(world.host)
    with pty_pair() as pair:
        switch_side = TappedPort(pair.switch_port)
        transport = SerialTransport(host.handle, world.host.settings, port=switch_side)
        loop.run(transport.start())
        terminal_side = TappedPort(open_terminal_port(pair.terminal_path))
        terminal, card = world.terminal(), world.card()
        link = SerialLink(terminal_side)
        edc = Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk, timeout_s=10.0),
                  link, EmulatedReader(), clock=world.clock)
        try:
            assert edc.ensure_logged_on()
            world.insert(edc, card)
            before_switch, before_terminal = len(switch_side.frames), len(terminal_side.frames)
            stats = link.channel.connection.stats
            implicit_before = stats.implicit_acks
            switch_side.drop_next_ack = True  # the ACK of the purchase request
            started = time.monotonic()
            assert edc.purchase([SPINACH], card.pin).approved
            took_s = time.monotonic() - started
            assert switch_side.acks_dropped == 1
            assert switch_side.mtis(before_switch) == ["0210"]
            assert stats.implicit_acks == implicit_before + 1
            # Still waiting for its ACK, the EDC would have sent the request again after
            # 2 s (and only then read the response): once, at once, it was not.
            assert took_s < ACK_TIMEOUT_S, f"purchase took {took_s:.2f} s"
            assert terminal_side.mtis(before_terminal) == ["0200"]
            assert stats.retransmits == 0
        finally:
            loop.run(transport.close())
            terminal_side.close()
            host.close()
            loop.stop()
    assert world.balance_sen(card) == PERIOD_SEN - SPINACH.total_sen


def test_one_percent_noise_100_purchases_all_correct(world: HostWorld) -> None:
    started = time.monotonic()
    with noisy_line(world, rate=0.01, seed=7) as line:
        approved: Counter[int] = Counter()
        for n in range(100):
            index = n % 12
            card = world.card(index=index)
            world.insert(line.edc, card)
            result = line.edc.purchase([SPINACH], card.pin)
            assert result.approved, (n, result.display, line.screen[-3:])
            approved[index] += 1
        damaged = line.terminal_side.damaged + line.switch_side.damaged
        link = line.edc.link
        assert isinstance(link, SerialLink)
        stats = link.channel.connection.stats
        retransmits, naks = stats.retransmits, stats.naks_received
    for index, count in approved.items():
        assert world.balance_sen(world.card(index=index)) == PERIOD_SEN - count * SPINACH.total_sen
    assert damaged > 0, "the line was not noisy"
    print(f"100 purchases at 1%: {damaged} damaged transmissions, terminal saw {naks} NAKs and "
          f"made {retransmits} retransmissions; "
          f"{time.monotonic() - started:.1f} s")


def test_link_down_keeps_the_reversal_until_the_line_recovers(
    world: HostWorld, tmp_path: Path,
) -> None:
    """1 % of bytes corrupted: a 215-byte request arrives whole 11.5 % of the time, so
    its 4 transmissions all fail more often than not and the link goes down."""
    with noisy_line(world, rate=0.0, seed=11) as line:
        edc = line.edc
        assert edc.ensure_logged_on()
        line.set_byte_error_rate(0.01)
        approved: Counter[int] = Counter()
        link_down_at = None
        for n in range(40):  # bounded: link down comes long before
            card = world.card(index=n % 12)
            world.insert(edc, card)
            shown = len(line.screen)
            result = edc.purchase([SPINACH], card.pin)
            if result.approved:
                approved[n % 12] += 1
            if any("serial link down" in s for s in line.screen[shown:]) \
                    and edc.pending_reversal is not None:
                link_down_at = n
                break
        assert link_down_at is not None, "the link never went down at 1 %"
        assert result.timed_out and result.display == "TIME-OUT / TRANSAKSI GAGAL"
        pending_stan = edc.pending_reversal.text(11)
        line.set_byte_error_rate(0.0)  # the line recovers
        card = world.card()
        world.insert(edc, card)
        # The pending reversal goes first (0400, then 0401 repeats).  Right after the
        # line recovers, damaged bytes sent before it may still be on their way (stale
        # copies of a response the EDC gave up on): each costs a NAK at the next quiet
        # and a retransmission, so the EDC may refuse one transaction (HOST SEDANG
        # OFFLINE) and try again with the next, as HOST_SPEC §4 says: repeated until a
        # response arrives.  Bounded.
        transactions = 0
        for _ in range(3):
            transactions += 1
            inquiry = edc.balance_inquiry(card.pin)
            if inquiry.approved:
                break
            assert inquiry.display == "HOST SEDANG OFFLINE", inquiry
        assert inquiry.approved and edc.pending_reversal is None, line.screen[-12:]
        assert any(f"REVERSAL STAN {pending_stan} RC 00" in s for s in line.screen)
    for index in range(12):
        expected = PERIOD_SEN - approved[index] * SPINACH.total_sen
        assert world.balance_sen(world.card(index=index)) == expected
    print(f"link down on purchase {link_down_at + 1} at 1 %; reversal {pending_stan} "
          f"delivered after recovery, transaction {transactions}")
