"""HOST_SPEC 1.1 beyond the day's end: DE 37 and DE 64 on every response type (§3, §6),
repeat-safe logon per terminal (§4) and the pruning of records past the window."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from switch.admin.records import prune_records
from switch.cli import main as cli_main
from switch.core.batch import Totals
from switch.db.tables import RequestRecord
from switch.db.tables import Terminal as TerminalRow
from switch.host.service import HostService
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import Message
from switch.protocol.unit import decode_unit
from switch.security.pin import encrypt_pin_block
from tests.host.dayend_client import (  # noqa: F401 (the fixtures)
    DayEndClient,
    balances,
    both_engines_world,
    logged_on_client,
)
from tests.world import HostWorld

RICE = BasketLine("BRS005", 1, 6_500_000)


def test_every_response_carries_de37_and_every_signable_one_de64(
        world: HostWorld, client: DayEndClient) -> None:
    """§3: DE 37 in every response to 0100, 0200, 0320, 0400, 0401, 0500, declines
    included; §6: DE 64 on all of them but 58 to an unknown terminal and 63."""
    chip, answer = client.purchase([RICE], client.pin or "")
    assert client.edc.balance_inquiry(client.pin or "").rc == codes.APPROVED
    inquiry = client.edc.last_request
    assert inquiry is not None
    pan = str(chip.fields[35]).split("D")[0]
    tpk = client.edc._tpk
    assert tpk is not None
    wrong_pin = encrypt_pin_block(tpk, "000000" if client.pin != "000000" else "111111", pan)
    cases: list[tuple[str, Message, str]] = [
        ("0210 approved (replayed)", chip, codes.APPROVED),
        ("0110 approved (replayed)", inquiry, codes.APPROVED),
        ("0210 insufficient", client.swiped(chip, de4=f"{10**11:012d}",
                                      de48=f"BRS005001{10**11:012d}"), codes.INSUFFICIENT_BALANCE),
        ("0210 wrong PIN", client.swiped(chip, de52=wrong_pin), codes.WRONG_PIN),
        ("0210 unsupported", client.swiped(chip, de3="380000"), codes.INVALID_TRANSACTION),
        ("0210 cash-out", client.swiped(chip, de3="011000"), codes.NOT_PERMITTED_KPM),
        ("0210 duplicate, other content", Message("0200", {**chip.fields, 4: "000000000100"}),
         codes.DUPLICATE_DIFFERENT),
        ("0210 void unknown", client.void(chip, invoice="999998")[0],
         codes.ORIGINAL_NOT_FOUND),
        ("0410", Message("0400", {de: v for de, v in client.swiped(chip).fields.items()
                                  if de != 52}), codes.APPROVED),
        ("0330", Message("0320", {3: "000001", 4: chip.text(4), 11: client.next_stan(),
                                  12: chip.text(12), 13: chip.text(13), 24: "001",
                                  37: answer.text(37), 38: answer.text(38), 41: chip.text(41),
                                  42: chip.text(42), 60: "000001", 62: chip.text(62)}),
         codes.APPROVED),
        ("0510 mismatch", client.settle(Totals(9, 1))[0], codes.SETTLEMENT_MISMATCH),
        ("0510 settled", client.settle(Totals(1, RICE.total_sen))[0], codes.APPROVED),
    ]
    cases.append(("0210 invoice not n6", client.swiped(chip, de62="12345X"),
                  codes.FORMAT_ERROR))
    bad_totals = Message("0500", {**client.settle(Totals())[0].fields, 11: client.next_stan(),
                                  63: "X" * 30})
    cases.append(("0510 DE 63 not digits", bad_totals, codes.FORMAT_ERROR))
    missing_basket = client.swiped(chip)
    del missing_basket.fields[48]
    cases.append(("0210 missing DE 48", missing_basket, codes.FORMAT_ERROR))
    before = balances(world)
    for what, request, rc in cases:
        got = client.send(request)
        assert (got.rc, got.message.has(37), got.signed) == (rc, True, True), what
    assert balances(world) == before  # replays, declines, an unknown reversal: no money
    # the unsigned ones: a MAC that fails, a terminal not logged on, an unknown terminal
    unit = bytearray(client.edc.encode_unit(client.swiped(chip)))
    unit[-1] ^= 1
    tampered = world.host.process_unit(bytes(unit))
    assert tampered is not None
    other = DayEndClient(world, world.edc(world.terminal(index=1)))
    stranger = Message("0200", {**client.swiped(chip).fields, 41: "EDC99999"})
    before = balances(world)
    for what, answer_unit, rc in [
        ("bad MAC", tampered, codes.SECURITY_VIOLATION),
        ("not logged on", _raw(world, other.edc.encode_unit(
            client.swiped(chip, de41=other.edc.config.tid))), codes.SECURITY_VIOLATION),
        ("unknown terminal", _raw(world, client.edc.encode_unit(stranger)),
         codes.NOT_PERMITTED_TERMINAL),
    ]:
        message = decode_unit(answer_unit).message
        assert (message.text(39), message.has(37), message.has(64)) == (rc, True, False), what
    assert balances(world) == before


def _raw(world: HostWorld, unit: bytes) -> bytes:
    answer = world.host.process_unit(unit)
    assert answer is not None
    return answer


def test_logon_repeated_with_the_same_stan_within_60_s_gets_the_same_keys(
        world: HostWorld) -> None:
    edc = world.edc()
    request = Message("0800", {3: "920000", 11: "000777", 24: "001", 41: edc.config.tid,
                               42: edc.config.mid})
    first = _raw(world, edc.encode_unit(request))
    wrapped = _wrapped_keys(world, edc.config.tid)
    world.clock.advance(timedelta(seconds=59))
    again = _raw(world, edc.encode_unit(request))
    assert again == first and _wrapped_keys(world, edc.config.tid) == wrapped
    world.clock.advance(timedelta(seconds=2))  # 61 s after: a new logon, new keys
    later = _raw(world, edc.encode_unit(request))
    assert later != first and _wrapped_keys(world, edc.config.tid) != wrapped
    other = Message("0800", {**request.fields, 11: "000778"})  # another DE 11: new keys
    assert _raw(world, edc.encode_unit(other)) != later


def test_logon_keys_hold_on_every_connection(world: HostWorld) -> None:
    """§4: logon is per terminal: an EDC that logged on through one link is served on
    another (a new Edc with the same keys, as a terminal reconnecting)."""
    edc, card = world.edc_with_card()
    assert edc.ensure_logged_on()
    second = world.edc()
    world.insert(second, card)
    second._tpk, second._tak = edc._tpk, edc._tak
    second.stan = 100
    assert second.purchase([RICE], card.pin).rc == codes.APPROVED
    # ... and across a restart: a new host process on the same database
    world.host = HostService(world.db, world.host.settings, world.clock)
    third = world.edc()  # linked to the new host
    world.insert(third, card)
    third._tpk, third._tak = edc._tpk, edc._tak
    third.stan = 200
    assert third.purchase([RICE], card.pin).rc == codes.APPROVED


def test_prune_refuses_a_window_shorter_than_the_setting(world: HostWorld) -> None:
    url = world.host.settings.database_url
    assert cli_main(["records", "prune", "--days", "6", "--db", url]) == 2
    assert cli_main(["records", "prune", "--dry-run", "--db", url]) == 0


def _wrapped_keys(world: HostWorld, tid: str) -> tuple[bytes | None, bytes | None]:
    with world.db.transaction() as session:
        row = session.execute(select(TerminalRow.tpk_wrapped, TerminalRow.tak_wrapped)
                              .where(TerminalRow.tid == tid)).one()
    return row[0], row[1]


def test_prune_removes_records_past_the_window_but_not_money_or_an_open_batch(
        world: HostWorld, client: DayEndClient) -> None:
    settled, _ = client.purchase([RICE], client.pin or "")
    assert client.settle(Totals(1, RICE.total_sen))[1].rc == codes.APPROVED
    open_one, _ = client.purchase([RICE], client.pin or "")
    assert client.edc.balance_inquiry(client.pin or "").rc == codes.APPROVED
    kept = {settled.text(11), open_one.text(11)}
    money = balances(world)
    key = bytes.fromhex(world.host.settings.audit_key_hex)
    now = world.clock.now()
    dry = prune_records(world.db, window=timedelta(days=7), now=now + timedelta(days=8),
                        audit_key=key, dry_run=True)
    assert dry.records == 2 and dry.kept == 2  # the inquiry and the settlement go
    assert prune_records(world.db, window=timedelta(days=7), now=now + timedelta(days=6),
                         audit_key=key).records == 0  # nothing is past the window yet
    done = prune_records(world.db, window=timedelta(days=7), now=now + timedelta(days=8),
                         audit_key=key)
    assert done.records == dry.records
    with world.db.transaction() as session:
        left = set(session.scalars(select(RequestRecord.stan)))
    assert left == kept
    assert balances(world) == money  # the ledger is untouched
    world.clock.advance(timedelta(days=8))
    assert client.settle(Totals(1, RICE.total_sen), "000002")[1].rc == codes.APPROVED
