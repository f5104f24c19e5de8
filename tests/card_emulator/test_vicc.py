"""Chip faults (sans-IO) and the vicc bridge against a fake vpcd on loopback (no pcscd)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from card_emulator.card import ATR, KksCard
from card_emulator.faults import (
    CTRL_ATR,
    CTRL_OFF,
    CTRL_ON,
    GARBAGE_TLV,
    WRONG_ATR,
    ChipFault,
    FaultPlan,
    Pull,
    Reply,
    Silence,
    respond,
)
from card_emulator.presets import PRESETS, card_for, preset_profile
from card_emulator.serve import Console
from card_emulator.vicc import ViccBridge, port_for_slot
from tests.card_emulator.test_card import GEN_AC, GPO, IMK_AC, PAN, SELECT

TIMEOUT_S = 5.0


def fresh() -> KksCard:
    card = card_for("kks", PAN, IMK_AC)
    card.power_on()
    return card


def test_control_bytes_keep_counters_and_atr_poll_keeps_session() -> None:
    card = fresh()
    assert respond(card, FaultPlan(), SELECT) == Reply(card.handle_apdu(SELECT))
    assert respond(card, FaultPlan(), bytes([CTRL_ATR])) == Reply(ATR)
    assert respond(card, FaultPlan(), GPO).data[-2:] == b"\x90\x00"  # session survived the poll
    assert respond(card, FaultPlan(), GEN_AC).data[-2:] == b"\x90\x00"
    for code in (CTRL_OFF, CTRL_ON):
        assert respond(card, FaultPlan(), bytes([code])) is None
    assert card.atc == 1 and card.pin_tries_remaining == 3
    assert respond(card, FaultPlan(), GPO).data == b"\x69\x85"  # session was reset


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (ChipFault.MUTE, Silence(0.5)),
        (ChipFault.SW_6F00, Reply(b"\x6f\x00")),
        (ChipFault.GARBAGE_TLV, Reply(GARBAGE_TLV + b"\x90\x00")),
    ],
)
def test_apdu_faults(fault: ChipFault, expected: object) -> None:
    assert respond(fresh(), FaultPlan(fault, delay_s=0.5), SELECT) == expected


def test_slow_wrong_atr_pull_and_only_ins() -> None:
    card = fresh()
    slow = respond(card, FaultPlan(ChipFault.SLOW, delay_s=1.5), SELECT)
    assert isinstance(slow, Reply) and slow.delay_s == 1.5 and slow.data[-2:] == b"\x90\x00"
    assert respond(card, FaultPlan(ChipFault.WRONG_ATR), bytes([CTRL_ATR])) == Reply(WRONG_ATR)
    assert WRONG_ATR != ATR and len(WRONG_ATR) == len(ATR)
    pull = FaultPlan(ChipFault.PULL_ON_GENERATE_AC)
    assert respond(card, pull, GPO).data[-2:] == b"\x90\x00"
    assert respond(card, pull, GEN_AC) == Pull() and card.atc == 1  # torn: ATC burnt
    only = FaultPlan(ChipFault.SW_6F00, only_ins=0xAE)
    assert respond(fresh(), only, SELECT).data[-2:] == b"\x90\x00"  # type: ignore[union-attr]
    assert respond(card, FaultPlan(), b"\x00") is None and respond(card, FaultPlan(), b"\x01\x02")


def test_presets() -> None:
    assert set(PRESETS) == {"kks", "magstripe", "expired", "pin-blocked", "unknown-aid"}
    assert preset_profile("magstripe", PAN, IMK_AC).track2[len(PAN) + 5 :].startswith("101")
    assert preset_profile("kks", PAN, IMK_AC).track2[len(PAN) + 5 :].startswith("221")
    assert preset_profile("expired", PAN, IMK_AC).expiry_yymm == "2312"
    unknown = card_for("unknown-aid", PAN, IMK_AC)
    unknown.power_on()
    assert unknown.handle_apdu(SELECT) == b"\x6a\x82"
    blocked = card_for("pin-blocked", PAN, IMK_AC)
    blocked.power_on()
    for apdu in (SELECT, GPO):
        blocked.handle_apdu(apdu)
    assert blocked.pin_tries_remaining == 0
    assert blocked.handle_apdu(GEN_AC)[2:6].hex().upper() == "9F270100"  # CID: AAC
    with pytest.raises(ValueError):
        preset_profile("gold", PAN, IMK_AC)
    assert port_for_slot(1) == 35964
    with pytest.raises(ValueError):
        port_for_slot(2)


# --- the bridge against a fake vpcd -----------------------------------------------------


class FakeVpcd:
    """vpcd's side of the wire: listen, accept the card, send framed messages."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(TIMEOUT_S)
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        self.conn, _ = self.server.accept()
        self.conn.settimeout(TIMEOUT_S)

    def send(self, payload: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(len(payload).to_bytes(2, "big") + payload)

    def recv(self) -> bytes:
        """One framed answer; ``b""`` when the card closed the connection."""
        assert self.conn is not None
        head = self._exact(2)
        return self._exact(int.from_bytes(head, "big")) if head else b""

    def _exact(self, n: int) -> bytes:
        assert self.conn is not None
        data = b""
        while len(data) < n:
            chunk = self.conn.recv(n - len(data))
            if not chunk:
                return b""
            data += chunk
        return data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def vpcd() -> Iterator[FakeVpcd]:
    fake = FakeVpcd()
    yield fake
    fake.close()


def test_bridge_serves_atr_and_apdus_and_removal_closes(vpcd: FakeVpcd) -> None:
    card = card_for("kks", PAN, IMK_AC)
    with ViccBridge(vpcd.port, card=card) as bridge:
        vpcd.accept()
        assert bridge.wait_presented(TIMEOUT_S)
        vpcd.send(bytes([CTRL_ON]))
        vpcd.send(bytes([CTRL_ATR]))
        assert vpcd.recv() == ATR
        vpcd.send(SELECT)
        assert vpcd.recv()[-2:] == b"\x90\x00"
        assert bridge.remove() is card
        assert vpcd.recv() == b""  # closed: the card left the slot
        bridge.insert(card)
        vpcd.accept()  # the same card comes back
        vpcd.send(bytes([CTRL_ATR]))
        assert vpcd.recv() == ATR


def test_bridge_mute_holds_then_drops_and_comes_back(vpcd: FakeVpcd) -> None:
    plan = FaultPlan(ChipFault.MUTE, delay_s=0.2)
    with ViccBridge(vpcd.port, card=card_for("kks", PAN, IMK_AC), plan=plan) as bridge:
        vpcd.accept()
        vpcd.send(SELECT)
        assert vpcd.recv() == b""  # never an empty reply: the line is dropped
        vpcd.accept()  # still in the slot, deactivated and seen again
        bridge.set_fault(FaultPlan())
        vpcd.send(SELECT)
        assert vpcd.recv()[-2:] == b"\x90\x00"


def test_bridge_pull_on_generate_ac_empties_the_slot(vpcd: FakeVpcd) -> None:
    plan = FaultPlan(ChipFault.PULL_ON_GENERATE_AC)
    with ViccBridge(vpcd.port, card=card_for("kks", PAN, IMK_AC), plan=plan) as bridge:
        vpcd.accept()
        for apdu in (SELECT, GPO):
            vpcd.send(apdu)
            assert vpcd.recv()[-2:] == b"\x90\x00"
        vpcd.send(GEN_AC)
        assert vpcd.recv() == b""
        assert bridge.card is None


def test_magstripe_card_is_never_presented(vpcd: FakeVpcd) -> None:
    vpcd.server.settimeout(0.3)
    with ViccBridge(vpcd.port, card=card_for("magstripe", PAN, IMK_AC)) as bridge:
        with pytest.raises(TimeoutError):
            vpcd.accept()
        assert not bridge.wait_presented(0.01)


def test_console_commands(vpcd: FakeVpcd) -> None:
    bridge = ViccBridge(vpcd.port)
    console = Console(bridge, IMK_AC)
    assert console.execute(f"insert {PAN}") == "inserted 601301******5678 (kks)"
    assert console.card(PAN) is bridge.card  # one card per PAN: counters persist
    assert console.execute("fault slow 0.5 AE") == "fault slow"
    assert bridge.plan == FaultPlan(ChipFault.SLOW, 0.5, 0xAE)
    assert console.execute("fault melted").startswith("error:")
    assert "601301******5678" in (console.execute("status") or "")
    assert console.execute(f"swap {PAN} magstripe") == "inserted 601301******5678 (magstripe)"
    assert console.execute("remove") == "removed 601301******5678"
    assert console.execute("remove") == "slot was empty"
    assert (console.execute("dance") or "").startswith("error: unknown command")
    assert console.execute("quit") is None
    assert PAN not in (console.execute("status") or "")
