"""Transports running for real on loopback: TCP, MQTT (our own Mosquitto), serial (pty).

``linked`` is the parametrized fixture of the cross-transport suite: the ``world``
whose ``edc()`` gives EDCs that reach its host over a real transport.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from threading import Event, Thread
from typing import Any

import pytest

from switch.host.runner import AsyncHost
from switch.transports.mqtt import MqttTransport
from switch.transports.presence import PresenceStore
from switch.transports.serial import SerialTransport
from switch.transports.tcp import TcpTransport
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import Faults, FaultyLink, Link
from terminal_sim.links import make_link
from terminal_sim.links.mqtt import MqttLink
from terminal_sim.links.pty import open_terminal_port, pty_pair
from terminal_sim.links.serial import SerialLink
from tests.world import HostWorld

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                          if os.path.exists("/usr/sbin/mosquitto") else None)
LINK_KINDS = ["tcp", "mqtt", "serial"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll ``condition`` until true; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.02)
    return time.monotonic() - start


def need_mosquitto() -> str:
    if MOSQUITTO is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto is required in CI (.ci/run installs it)")
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    return MOSQUITTO


class Broker:
    """Our own Mosquitto on a free loopback port, to kill and restart at will."""

    def __init__(self, tmp: Path) -> None:
        self.binary = need_mosquitto()
        self.port = free_port()
        self.config = tmp / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                               "persistence false\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._listening, 10, "mosquitto listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


class LoopThread:
    """An asyncio loop in a thread (the switch side of a test)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = Event()
        self._thread = Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 15) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@dataclass
class Linked:
    """A world whose EDCs talk to its host over one real transport."""

    kind: str
    world: HostWorld
    url: str
    links: list[Link]
    serial_link: SerialLink | None = None
    transport: MqttTransport | SerialTransport | None = None

    def link(self, tid: str) -> Link:
        if self.serial_link is not None:
            return self.serial_link  # one line; the EDCs take turns
        link = make_link(self.url, tid)
        if isinstance(link, MqttLink):
            assert link.wait_connected(10), "terminal not connected to the broker"
        self.links.append(link)
        return link


def linked_edc(linked: Linked) -> Callable[..., Edc]:
    world = linked.world

    def edc(terminal: Any = None, faults: Faults | None = None) -> Edc:
        terminal = terminal or world.terminal()
        link = FaultyLink(linked.link(terminal.tid), faults)
        config = EdcConfig(terminal.tid, terminal.mid, terminal.tmk, timeout_s=10.0)
        return Edc(config, link, EmulatedReader(), clock=world.clock)

    return edc


@contextmanager
def serving(world: HostWorld, kind: str, tmp_path: Path,
            broker_url: str | None = None) -> Iterator[Linked]:
    """The host of ``world`` behind a real ``kind`` transport; yields a :class:`Linked`."""
    loop = LoopThread()
    host = AsyncHost(world.host)
    presence = PresenceStore(world.db)
    closers: list[Callable[[], None]] = []
    try:
        if kind == "tcp":
            settings = world.host.settings.model_copy(update={"port": 0})
            tcp = TcpTransport(host.handle, settings)
            _, port = loop.run(tcp.start())
            closers.append(lambda: loop.run(tcp.close()))
            yield Linked(kind, world, f"tcp://127.0.0.1:{port}", [])
        elif kind == "mqtt":
            assert broker_url is not None
            settings = world.host.settings.model_copy(update={
                "mqtt_url": broker_url, "mqtt_reconnect_min_s": 0.1, "mqtt_reconnect_max_s": 1.0})
            mqtt = MqttTransport(host.handle, settings, presence)
            loop.run(mqtt.start())
            assert mqtt.connected.is_set()
            closers.append(lambda: loop.run(mqtt.close()))
            linked = Linked(kind, world, broker_url, [], transport=mqtt)

            def close_links() -> None:
                for link in linked.links:
                    link.close()

            closers.append(close_links)
            yield linked
        else:
            with pty_pair() as pair:
                transport = SerialTransport(host.handle, world.host.settings,
                                            port=pair.switch_port)
                loop.run(transport.start())
                closers.append(lambda: loop.run(transport.close()))
                link = SerialLink(open_terminal_port(pair.terminal_path))
                closers.append(link.close)
                yield Linked(kind, world, f"serial:{pair.terminal_path}", [], link, transport)
                for close in reversed(closers):
                    close()
                closers.clear()
    finally:
        for close in reversed(closers):
            close()
        host.close()
        loop.stop()
        presence.close()


@pytest.fixture(params=LINK_KINDS)
def linked(request: pytest.FixtureRequest, world: HostWorld,
           tmp_path: Path) -> Iterator[HostWorld]:
    """The ``world`` fixture, but ``world.edc()`` reaches the host over tcp, mqtt or serial."""
    kind = request.param
    broker_url = None
    if kind == "mqtt":
        broker = request.getfixturevalue("broker")
        broker_url = broker.url
    with serving(world, kind, tmp_path, broker_url) as link:
        original = world.edc
        world.edc = linked_edc(link)  # type: ignore[method-assign]
        try:
            yield world
        finally:
            world.edc = original  # type: ignore[method-assign]
