"""The TCP transport against a real socket on loopback (HOST_SPEC §1)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from threading import Event, Thread

from switch.host.runner import AsyncHost
from switch.protocol.bpnt import BasketLine
from switch.protocol.framing import frame_tcp
from switch.protocol.message import Message
from switch.protocol.unit import Tpdu, Unit, decode_unit, encode_unit
from switch.transports.tcp import TcpTransport
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import TcpLink
from tests.world import PERIOD_SEN, HostWorld

ECHO = Message("0800", {3: "990000", 11: "000001", 24: "001", 41: "EDC00001"})


@contextmanager
def running_switch(world: HostWorld, **limits: float) -> Iterator[int]:
    """The transport on an ephemeral loopback port, in its own event loop thread."""
    settings = replace_settings(world, port=0, **limits)
    started, port_box = Event(), [0]
    loop = asyncio.new_event_loop()
    host = AsyncHost(world.host)
    transport = TcpTransport(host.handle, settings)

    def run() -> None:
        asyncio.set_event_loop(loop)
        _, port_box[0] = loop.run_until_complete(transport.start())
        started.set()
        loop.run_forever()

    thread = Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "switch did not start"
    try:
        yield port_box[0]
    finally:
        asyncio.run_coroutine_threadsafe(transport.close(), loop).result(10)
        host.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def replace_settings(world: HostWorld, **changes: float) -> object:
    return world.host.settings.model_copy(update=changes)


def _read_frame(sock: socket.socket) -> bytes:
    header = _read_exact(sock, 2)
    return _read_exact(sock, int.from_bytes(header, "big"))


def _read_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def test_purchase_over_tcp(world: HostWorld) -> None:
    with running_switch(world) as port:
        terminal = world.terminal()
        card = world.card()
        edc = Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk), TcpLink("127.0.0.1", port),
                  EmulatedReader(), clock=world.clock)
        world.insert(edc, card)
        result = edc.purchase([BasketLine("BRS005", 1, 6_500_000)], card.pin)
        edc.link.close()
    assert result.rc == "00"
    assert world.balance_sen(card) == PERIOD_SEN - 6_500_000


def test_partial_and_coalesced_frames(world: HostWorld) -> None:
    unit = encode_unit(Unit(Tpdu(), ECHO))
    stream = frame_tcp(unit) * 3
    with running_switch(world) as port, socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.settimeout(5)
        for i in range(0, len(stream) - 3, 7):  # byte dribble, then the rest at once
            sock.sendall(stream[i : i + 7])
            if i > 20:
                sock.sendall(stream[i + 7 :])
                break
        answers = [decode_unit(_read_frame(sock)).message for _ in range(3)]
    assert [a.text(39) for a in answers] == ["00", "00", "00"]
    assert all(a.mti == "0810" for a in answers)


def test_oversize_frame_closes_the_connection(world: HostWorld) -> None:
    with running_switch(world) as port, socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.settimeout(5)
        sock.sendall((2049).to_bytes(2, "big") + b"x" * 100)
        assert sock.recv(10) == b""


def test_garbage_body_gets_30_and_the_connection_stays_usable(world: HostWorld) -> None:
    with running_switch(world) as port, socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.settimeout(5)
        sock.sendall(frame_tcp(Tpdu().to_bytes() + b"\x02\x00" + b"\xff" * 20))
        assert decode_unit(_read_frame(sock)).message.text(39) == "30"
        sock.sendall(frame_tcp(encode_unit(Unit(Tpdu(), ECHO))))
        assert decode_unit(_read_frame(sock)).message.text(39) == "00"


def test_partial_frame_is_cut_off_after_its_timeout(world: HostWorld) -> None:
    with running_switch(world, partial_frame_timeout_s=0.3) as port, socket.create_connection(
        ("127.0.0.1", port), 5
    ) as sock:
        sock.settimeout(5)
        sock.sendall(b"\x00\x40abc")  # promises 64 bytes, sends 3
        assert sock.recv(10) == b""  # closed by the switch, not by our 5 s timeout


def test_connection_limit_refuses_extra_connections(world: HostWorld) -> None:
    with running_switch(world, max_connections=2) as port:
        socks: list[socket.socket] = []
        try:
            for _ in range(2):  # each one counted before the next is opened
                s = socket.create_connection(("127.0.0.1", port), 5)
                socks.append(s)
                s.settimeout(5)
                s.sendall(frame_tcp(encode_unit(Unit(Tpdu(), ECHO))))
                assert decode_unit(_read_frame(s)).message.text(39) == "00"
            extra = socket.create_connection(("127.0.0.1", port), 5)
            socks.append(extra)
            extra.settimeout(5)
            assert extra.recv(10) == b""
        finally:
            for s in socks:
                s.close()
