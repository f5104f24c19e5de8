"""HOST_SPEC 1.1 §5-6 when the database fails, on both engines: a 91 carries DE 37 and
is signed whenever the switch can read the terminal's keys, and a commit that fails
gets no answer at all (it may have landed), so the terminal's reversal settles it.

The outage is real on PostgreSQL (the test database refuses connections and its
sessions are ended); on SQLite, which has no server to stop, the driver's error is
raised where the transaction begins.  A failing commit is the dialect's
``do_commit`` run for real and then failing (the driver's own error, the PostgreSQL
connection really closed), or, for one that does not land, failing first (on
PostgreSQL the session's backend is ended before the COMMIT is sent).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.exc import OperationalError

from switch.admin.demo import DemoTerminal
from switch.db.tables import Transfer
from switch.host.known_taks import KnownTaks
from switch.host.service import HostService
from switch.ledger.invariants import check_invariants
from switch.protocol import codes
from switch.protocol.bpnt import BasketLine
from switch.protocol.message import Message
from switch.protocol.unit import TPDU_LEN, decode_unit
from switch.security import mac
from switch.security.keys import parse_key_data
from terminal_sim.card_reader import EmulatedReader
from terminal_sim.edc import Edc, EdcConfig
from terminal_sim.link import LinkDown
from tests.world import PERIOD_SEN, HostWorld

TEMPE = BasketLine("TMP001", 1, 500_000)
#: pg_terminate_backend waits this long for the backend to be gone.
TERMINATE_WAIT_MS = 5000


class _Recorder:
    """The EDC's link straight into a host, keeping every exchange (answer ``None``:
    the host answered nothing and closed the connection)."""

    def __init__(self, host: HostService) -> None:
        self.host = host
        self.exchanges: list[tuple[Message, bytes | None]] = []

    def exchange(self, unit: bytes, timeout_s: float) -> bytes:
        answer = self.host.process_unit(unit)
        self.exchanges.append((decode_unit(unit).message, answer))
        if answer is None:
            raise LinkDown("host closed the connection")
        return answer

    def close(self) -> None:
        pass

    def last(self, mti: str) -> tuple[Message, bytes | None]:
        return [(q, a) for q, a in self.exchanges if q.mti == mti][-1]

    def tak(self, terminal: DemoTerminal) -> bytes:
        """The TAK of the last logon, taken from its answer with the TMK, as an EDC does."""
        _, answer = self.last("0800")
        assert answer is not None
        return parse_key_data(terminal.tmk, decode_unit(answer).message.text(62))[1]


def _edc(world: HostWorld) -> tuple[Edc, _Recorder]:
    terminal = world.terminal()
    link = _Recorder(world.host)
    edc = Edc(EdcConfig(terminal.tid, terminal.mid, terminal.tmk), link, EmulatedReader(),
              clock=world.clock)
    world.insert(edc, world.card())
    return edc, link


def _admin_engine() -> Any:
    from tests.postgres.pg import SERVER_URL

    return create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")


@contextmanager
def _database_down(world: HostWorld) -> Iterator[None]:
    """No transaction can begin (see the module)."""
    engine = world.db.engine
    if engine.dialect.name == "sqlite":
        def refuse(_connection: Any) -> None:
            raise OperationalError("BEGIN IMMEDIATE", None,
                                   sqlite3.OperationalError("unable to open database file"))

        event.listen(engine, "begin", refuse, insert=True)
        try:
            yield
        finally:
            event.remove(engine, "begin", refuse)
        return
    name = engine.url.database
    admin = _admin_engine()
    try:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            connection.execute(text(
                "SELECT pg_terminate_backend(pid, :wait_ms) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"),
                {"name": name, "wait_ms": TERMINATE_WAIT_MS})
        yield
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


def _failing_commit(world: HostWorld, monkeypatch: pytest.MonkeyPatch, *,
                    landed: bool) -> list[int]:
    """The next commit fails, after landing or before; the list counts the failures."""
    dialect = world.db.engine.dialect
    real: Callable[[Any], None] = dialect.do_commit
    failures: list[int] = []
    postgres = dialect.name == "postgresql"

    def commit(pooled: Any) -> None:  # SQLAlchemy passes the pool's proxy of it
        if failures:
            real(pooled)
            return
        failures.append(1)
        if landed:
            real(pooled)
            if postgres:
                import psycopg

                pooled.dbapi_connection.close()  # the connection breaks as it lands
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            raise sqlite3.OperationalError("disk I/O error")
        if not postgres:
            raise sqlite3.OperationalError("disk I/O error")
        admin = _admin_engine()
        try:
            with admin.connect() as connection:
                assert connection.scalar(text("SELECT pg_terminate_backend(:pid, :wait_ms)"), {
                    "pid": pooled.dbapi_connection.info.backend_pid,
                    "wait_ms": TERMINATE_WAIT_MS})
        finally:
            admin.dispose()
        real(pooled)  # to a backend that is gone: the driver raises

    monkeypatch.setattr(dialect, "do_commit", commit)
    return failures


def _transfers(world: HostWorld, kind: str) -> int:
    with world.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(Transfer)
                                  .where(Transfer.kind == kind)) or 0)


def _answer(raw: bytes | None) -> Message:
    assert raw is not None, "no answer"
    return decode_unit(raw).message


def _assert_invariants(world: HostWorld) -> None:
    report = check_invariants(world.db)
    assert report.ok, report.summary()


def test_a_91_in_an_outage_carries_de37_and_a_mac_and_the_edc_takes_it_as_a_decline(
        engine_world: HostWorld) -> None:
    """The switch process knows the TAK from one answer it signed since it started."""
    world = engine_world
    edc, link = _edc(world)
    assert edc.ensure_logged_on()
    card = world.card()
    link.host = HostService(world.db, world.host.settings, world.clock)  # restarted
    assert edc.balance_inquiry(card.pin).approved  # signed: now it knows the TAK

    with _database_down(world):
        declined = edc.purchase([TEMPE], card.pin)
        purchase, raw = link.last("0200")
        # Not the terminal's (DE 4 changed under the old MAC): never signed for it.
        forged = link.host.process_unit(
            edc.encode_unit(purchase.with_fields(de4=f"{1:012d}"), sign=False))

    assert (declined.rc, declined.display, declined.timed_out) == (
        codes.HOST_UNAVAILABLE, "HOST SEDANG OFFLINE", False)
    assert edc.pending_reversal is None  # a clean decline: nothing to reverse
    answer = _answer(raw)
    assert answer.text(39) == codes.HOST_UNAVAILABLE and answer.text(11) == purchase.text(11)
    assert answer.text(37).isdigit() and len(answer.text(37)) == 12
    assert answer.has(64) and raw is not None
    assert mac.verify(link.tak(world.terminal()), raw[TPDU_LEN:])
    refused = _answer(forged)
    assert (refused.text(39), refused.has(37), refused.has(64)) == (
        codes.HOST_UNAVAILABLE, True, False)

    # The database back: no reversal was owed, the next purchase debits once.
    assert world.balance_sen(card) == PERIOD_SEN
    assert edc.purchase([TEMPE], card.pin).approved
    assert not [q for q, _ in link.exchanges if q.mti in ("0400", "0401")]
    assert world.balance_sen(card) == PERIOD_SEN - TEMPE.total_sen
    _assert_invariants(world)


def test_a_91_goes_unsigned_only_when_the_switch_cannot_read_the_keys(
        engine_world: HostWorld) -> None:
    """A switch process that never answered the terminal (just restarted), or one whose
    key is stale (the terminal logged on through another process), cannot sign; one
    that holds the terminal's current TAK signs.  The EDC keeps its reversal pending
    through every 91 and delivers it once the database is back."""
    world = engine_world
    edc, link = _edc(world)
    first = world.host
    assert edc.ensure_logged_on()  # through `first`, which now knows the TAK
    card = world.card()
    restarted = HostService(world.db, world.host.settings, world.clock)

    link.host = restarted
    with _database_down(world):
        lost = edc.purchase([TEMPE], card.pin)
    unsigned = _answer(link.last("0200")[1])
    assert (unsigned.text(39), unsigned.has(37), unsigned.has(64)) == (
        codes.HOST_UNAVAILABLE, True, False)
    assert lost.timed_out and edc.pending_reversal is not None  # as if no answer came

    assert edc.logon().approved  # through `restarted`: new keys; `first`'s TAK is stale
    with _database_down(world):
        link.host = first
        assert not edc.send_pending_reversal()
        stale = _answer(link.last("0400")[1])
        link.host = restarted
        assert not edc.send_pending_reversal()
        reversal, raw = link.last("0401")
    assert (stale.text(39), stale.has(37), stale.has(64)) == (
        codes.HOST_UNAVAILABLE, True, False)
    signed = _answer(raw)
    assert (signed.text(39), signed.has(37), signed.has(64)) == (
        codes.HOST_UNAVAILABLE, True, True)
    assert raw is not None and mac.verify(link.tak(world.terminal()), raw[TPDU_LEN:])
    assert edc.pending_reversal is not None  # a 91 restored nothing: still owed

    assert edc.send_pending_reversal()  # the database back: 00, remembered
    assert _answer(link.last("0401")[1]).text(39) == codes.APPROVED
    assert world.balance_sen(card) == PERIOD_SEN
    assert _transfers(world, "purchase") == 0
    _assert_invariants(world)


def test_a_commit_that_lands_and_then_fails_is_not_answered_and_its_reversal_nets_it(
        engine_world: HostWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    world = engine_world
    edc, link = _edc(world)
    assert edc.ensure_logged_on()
    card = world.card()

    failures = _failing_commit(world, monkeypatch, landed=True)
    result = edc.purchase([TEMPE], card.pin)
    monkeypatch.undo()

    assert failures == [1]
    assert link.last("0200")[1] is None  # no 91: the debit had landed
    assert result.timed_out and edc.pending_reversal is not None
    assert world.balance_sen(card) == PERIOD_SEN - TEMPE.total_sen
    assert edc.send_pending_reversal()
    reversal, answer = link.last("0400")
    assert _answer(answer).text(39) == codes.APPROVED
    assert world.balance_sen(card) == PERIOD_SEN
    # Repeated (a lost answer): answered again, restores nothing more.
    assert _answer(link.exchange(edc.encode_unit(Message("0401", reversal.fields)), 1.0)
                   ).text(39) == codes.APPROVED
    assert world.balance_sen(card) == PERIOD_SEN
    assert (_transfers(world, "purchase"), _transfers(world, "reversal")) == (1, 1)
    _assert_invariants(world)


def test_a_commit_that_fails_before_landing_is_not_answered_and_moves_nothing(
        engine_world: HostWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    world = engine_world
    edc, link = _edc(world)
    assert edc.ensure_logged_on()
    card = world.card()

    failures = _failing_commit(world, monkeypatch, landed=False)
    result = edc.purchase([TEMPE], card.pin)
    monkeypatch.undo()

    assert failures == [1]
    purchase, answer = link.last("0200")
    assert answer is None and result.timed_out and edc.pending_reversal is not None
    assert world.balance_sen(card) == PERIOD_SEN
    assert edc.send_pending_reversal()  # an unknown original: 00, and remembered
    assert _answer(link.last("0400")[1]).text(39) == codes.APPROVED
    # The purchase arriving after its reversal is declined and moves nothing (§4).
    assert edc.resend(purchase).text(39) == codes.DO_NOT_HONOUR
    assert world.balance_sen(card) == PERIOD_SEN
    assert (_transfers(world, "purchase"), _transfers(world, "reversal")) == (0, 0)
    _assert_invariants(world)


def test_known_taks_are_bounded_and_forget_the_least_recently_answered() -> None:
    known = KnownTaks(capacity=2)
    known._put("EDC00001", b"1" * 16)
    known._put("EDC00002", b"2" * 16)
    known._put("EDC00001", b"3" * 16)  # answered again: the most recent now
    known._put("EDC00003", b"4" * 16)
    assert (known.tak("EDC00001"), known.tak("EDC00002"), known.tak("EDC00003")) == (
        b"3" * 16, None, b"4" * 16)
    assert "3333" not in repr(known) and len(known) == 2
