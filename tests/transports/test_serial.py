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
from switch.transports.serial import SerialChannel, SerialTransport
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.links import make_link
from terminal_sim.links.serial import NoisyPort, SerialLink
from tests.transports.conftest import LoopThread, open_terminal_port, pty_pair
from tests.world import PERIOD_SEN, HostWorld

SPINACH = BasketLine("SYR001", 1, 300_000)


def test_loop_url_carries_a_frame_and_its_ack() -> None:
    """pyserial's ``loop://`` echoes what is written: the channel receives its own frame,
    ACKs it, and takes its own ACK as the answer."""
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


def test_thirty_percent_noise_link_down_keeps_the_reversal_until_the_line_recovers(
    world: HostWorld, tmp_path: Path,
) -> None:
    with noisy_line(world, rate=0.0, seed=11) as line:
        edc = line.edc
        assert edc.ensure_logged_on()
        line.set_rate(0.30)
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
        assert link_down_at is not None, "the link never went down at 30%"
        assert result.timed_out and result.display == "TIME-OUT / TRANSAKSI GAGAL"
        pending_stan = edc.pending_reversal.text(11)
        line.set_rate(0.0)  # the line recovers
        card = world.card()
        world.insert(edc, card)
        # The pending reversal goes first (0400, then 0401 repeats).  Right after the
        # line recovers the switch may still be retransmitting its last response, so the
        # EDC may refuse one transaction (HOST SEDANG OFFLINE) and try again with the
        # next, as HOST_SPEC §4 says: repeated until a response arrives.  Bounded.
        for _attempt in range(3):
            inquiry = edc.balance_inquiry(card.pin)
            if inquiry.approved:
                break
            assert inquiry.display == "HOST SEDANG OFFLINE", inquiry
        assert inquiry.approved and edc.pending_reversal is None, line.screen[-12:]
        assert any(f"REVERSAL STAN {pending_stan} RC 00" in s for s in line.screen)
    for index in range(12):
        expected = PERIOD_SEN - approved[index] * SPINACH.total_sen
        assert world.balance_sen(world.card(index=index)) == expected
    print(f"link down on purchase {link_down_at + 1} at 30%; reversal {pending_stan} "
          f"delivered after recovery")
