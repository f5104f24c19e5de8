"""PC/SC fixtures: pcscd with the vsmartcard vpcd driver, vicc bridges on both slots.

Missing pyscard, pcscd or vpcd skips these tests with the reason, except under
``CI=true``, where the same condition fails them (`require`).  A pcscd already
running is used; otherwise one is started (``pcscd --foreground``, no
``--auto-exit``) and stopped after the session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from card_emulator.card import KksCard
from card_emulator.presets import card_for
from card_emulator.vicc import ViccBridge, port_for_slot
from switch.admin.demo import DemoCard, DemoTerminal
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import DirectLink, FaultyLink
from terminal_sim.pcsc_reader import PcscReader, list_readers, pyscard_available
from tests.world import HostWorld

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")
START_TIMEOUT_S = 10.0
#: Test-sized reader limits: a silent card is given up on quickly.
APDU_TIMEOUT_S = 1.0
REMOVAL_GRACE_S = 0.8


def require(condition: bool, reason: str) -> None:
    """Skip when ``condition`` does not hold; under ``CI=true`` fail instead, so CI
    can never go green by skipping the PC/SC tests."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PC/SC test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _pcscd_binary() -> str | None:
    return shutil.which("pcscd") or next(
        (p for p in ("/usr/sbin/pcscd", "/sbin/pcscd") if Path(p).exists()), None
    )


def _readers_up() -> bool:
    try:
        names = list_readers()
    except Exception:
        return False
    return all(name in names for name in READERS)


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="session")
def pcscd() -> Iterator[None]:
    require(pyscard_available(), "pyscard is not installed (pip install .[pcsc])")
    binary = _pcscd_binary()
    require(binary is not None, "pcscd is not installed (apt-get install pcscd)")
    require(VPCD_DRIVER.exists(), "vpcd driver missing (apt-get install vsmartcard-vpcd)")
    if _readers_up():
        yield
        return
    assert binary is not None
    started = subprocess.Popen([binary, "--foreground"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        up = _wait(_readers_up, START_TIMEOUT_S)
        require(up, f"pcscd did not offer {', '.join(READERS)} within {START_TIMEOUT_S} s "
                    f"(exit code {started.poll()})")
        yield
    finally:
        started.terminate()
        try:
            started.wait(5)
        except subprocess.TimeoutExpired:
            started.kill()
            started.wait(5)


class Slot:
    """One vpcd slot: the bridge (card side) and a reader name (terminal side)."""

    def __init__(self, index: int, imk_ac: bytes) -> None:
        self.index = index
        self.name = READERS[index]
        self.bridge = ViccBridge(port_for_slot(index))
        self._imk_ac = imk_ac
        self._cards: dict[str, KksCard] = {}

    def card(self, demo: DemoCard, preset: str = "kks") -> KksCard:
        """One emulated card per PAN (its ATC only moves forward)."""
        if demo.pan not in self._cards:
            self._cards[demo.pan] = card_for(preset, demo.pan, self._imk_ac, psn=demo.psn,
                                             expiry_yymm=demo.expiry_yymm)
        return self._cards[demo.pan]

    def reader(self, **kwargs: float) -> PcscReader:
        kwargs.setdefault("apdu_timeout_s", APDU_TIMEOUT_S)
        kwargs.setdefault("removal_grace_s", REMOVAL_GRACE_S)
        return PcscReader(self.name, **kwargs)

    def insert(self, card: KksCard) -> None:
        """Insert (pulling any card first, as a person does) and wait until pcscd reports
        the card in the slot."""
        if self.bridge.card is not None or self.reader().card_present():
            self.empty()
        self.bridge.swap(card)
        assert self.bridge.wait_presented(START_TIMEOUT_S), "vpcd did not take the card"
        assert self.reader().wait_for_card(START_TIMEOUT_S), "pcscd did not see the card"

    def empty(self) -> None:
        """Pull any card and wait until pcscd reports the slot empty."""
        self.bridge.remove()
        assert self.reader().wait_for_removal(START_TIMEOUT_S), "pcscd still sees a card"


@pytest.fixture
def slots(pcscd: None, world: HostWorld) -> Iterator[list[Slot]]:
    both = [Slot(0, world.keys.imk_ac), Slot(1, world.keys.imk_ac)]
    for slot in both:
        slot.bridge.start()
    try:
        yield both
    finally:
        for slot in both:
            slot.bridge.stop()
        for slot in both:  # the next test starts with empty slots
            _wait(lambda s=slot: not s.reader().card_present(), START_TIMEOUT_S)


_host_lock = threading.Lock()


def pcsc_edc(world: HostWorld, reader: PcscReader, terminal: DemoTerminal | None = None,
             on_screen: Callable[[str], None] | None = None) -> Edc:
    """An EDC on the real host (in process) reading cards through PC/SC."""
    terminal = terminal or world.terminal()

    def host(unit: bytes) -> bytes | None:
        with _host_lock:  # two terminals at once share one SQLite host
            return world.host.process_unit(unit)

    return Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk),
               FaultyLink(DirectLink(host)), reader, clock=world.clock, on_screen=on_screen)
