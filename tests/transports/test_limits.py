"""Issue 4: slow-loris and 2,000 idle connections do not stop a normal terminal.

Idle and slow clients connect from other loopback addresses (127.0.0.2-6: all of
127/8 is loopback on Linux), as many e-warongs would from their own networks.
"""

from __future__ import annotations

import socket
import threading

from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.framing import frame_tcp
from switch.protocol.unit import Tpdu, Unit, decode_unit, encode_unit
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import TcpLink
from tests.transports.test_tcp import ECHO, _read_frame, running_switch
from tests.world import PERIOD_SEN, HostWorld

IDLE_CONNECTIONS = 2000
IDLE_SOURCES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


def _connect_from(source: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def test_slow_loris_and_idle_crowd_do_not_stop_a_purchase(world: HostWorld) -> None:
    with running_switch(world, partial_frame_timeout_s=1.0,
                        max_connections=IDLE_CONNECTIONS + 100) as port:
        idle = [_connect_from(IDLE_SOURCES[i % len(IDLE_SOURCES)], port)
                for i in range(IDLE_CONNECTIONS)]
        loris = _connect_from("127.0.0.6", port)
        cut_off = threading.Event()

        def trickle() -> None:
            """One byte of a 64-byte frame every 0.2 s, until the switch hangs up."""
            try:
                loris.sendall(b"\x00\x40")
                for _ in range(100):  # bounded: at most 20 s
                    loris.sendall(b"x")
                    loris.settimeout(0.2)
                    try:
                        if loris.recv(1) == b"":
                            cut_off.set()
                            return
                    except TimeoutError:
                        continue
            except OSError:
                cut_off.set()

        slow = threading.Thread(target=trickle, daemon=True)
        slow.start()
        try:
            terminal, card = world.terminal(), world.card()
            # The terminal's own timeout is 1 s: a purchase that waits longer times out.
            edc = Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk, timeout_s=1.0),
                      TcpLink("127.0.0.1", port, connect_timeout_s=1.0), EmulatedReader(),
                      clock=world.clock)
            world.insert(edc, card)
            result = edc.purchase([BasketLine("BRS005", 1, 6_500_000)], card.pin)
            edc.link.close()
            assert result.rc == codes.APPROVED, result
            assert world.balance_sen(card) == PERIOD_SEN - 6_500_000
            assert cut_off.wait(10), "the slow-loris client was never cut off"
        finally:
            slow.join(25)
            loris.close()
            for sock in idle:
                sock.close()


def test_per_address_limit_refuses_only_that_address(world: HostWorld) -> None:
    with running_switch(world, max_connections_per_address=3) as port:
        crowd = [_connect_from("127.0.0.7", port) for _ in range(3)]
        try:
            # Half a length prefix: open (and counted, in accept order) until its timeout.
            for sock in crowd:
                sock.sendall(b"\x00")
            extra = _connect_from("127.0.0.7", port)
            crowd.append(extra)
            assert extra.recv(10) == b""  # refused: that address already has three
            other = _connect_from("127.0.0.8", port)
            crowd.append(other)
            other.sendall(frame_tcp(encode_unit(Unit(Tpdu(), ECHO))))
            assert decode_unit(_read_frame(other)).message.text(39) == "00"
        finally:
            for sock in crowd:
                sock.close()
