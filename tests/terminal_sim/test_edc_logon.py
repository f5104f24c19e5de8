"""The EDC's logon against a damaged answer (HOST_SPEC §6: DE 62 carries the keys and
their check values)."""

from __future__ import annotations

from switch.protocol import codes
from switch.protocol.message import decode, encode
from switch.protocol.unit import TPDU_LEN
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import DirectLink
from tests.world import HostWorld


def _damaging_de62(world: HostWorld, damage: str) -> Edc:
    """An EDC whose logon answers arrive with DE 62 damaged (``flip``: one key byte
    changed, so a check value fails; ``drop``: DE 62 missing)."""

    def host(unit: bytes) -> bytes | None:
        answer = world.host.process_unit(unit)
        if answer is None:
            return None
        message = decode(answer[TPDU_LEN:])
        if message.mti != "0810" or not message.has(62):
            return answer
        fields = dict(message.fields)
        if damage == "flip":
            key_data = bytearray(bytes.fromhex(message.text(62)))
            key_data[0] ^= 0x01
            fields[62] = key_data.hex().upper()
        else:
            del fields[62]
        return answer[:TPDU_LEN] + encode(type(message)(message.mti, fields))

    terminal = world.terminal()
    return Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk), DirectLink(host),
               EmulatedReader(), clock=world.clock)


def test_an_approved_logon_with_a_damaged_key_block_is_a_failed_logon(world: HostWorld) -> None:
    for damage in ("flip", "drop"):
        edc = _damaging_de62(world, damage)
        screens: list[str] = []
        edc.on_screen = screens.append
        result = edc.logon()
        assert result.rc is None and not result.approved
        assert result.display == codes.TIMEOUT_DISPLAY
        assert not edc.logged_on
        assert screens and "LOGON GAGAL" in screens[-1]
