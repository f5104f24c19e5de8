"""HostService: request units in, response units out (HOST_SPEC §1-7).

Every request that can move money runs in a database transaction holding the
gate (terminal, logon, MAC), the idempotency record, the stored response, any
transfer and the audit record together (DESIGN.md: one writer of money).  Group
commit (:meth:`HostService.process_batch`): many requests share one transaction,
and no answer leaves before it commits.  Stored
responses are replayed verbatim, re-signed with the terminal's current TAK
(HOST_SPEC §4: byte-identical except for the MAC).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from switch.clock import Clock, SystemClock
from switch.host import logon
from switch.host.card_request import CardJob, RunFailed, UnitFailed, decide_run
from switch.host.checks import Checks, warm
from switch.host.context import HostContext
from switch.host.gate import Refusal, admit, answer_refusal
from switch.host.keyring import Keyring
from switch.host.responses import build_response, request_hash
from switch.host.reversal import handle_reversal
from switch.ledger.database import Database
from switch.protocol import codes
from switch.protocol.errors import FramingError, ProtocolError
from switch.protocol.message import Message, encode
from switch.protocol.routing import TxnType, classify, missing_des, response_mti
from switch.protocol.unit import TPDU_LEN, Tpdu, decode_unit
from switch.security import mac
from switch.settings import Settings

log = logging.getLogger("bpnt.host")

_NOT_YET_SUPPORTED = frozenset({TxnType.VOID, TxnType.BATCH_UPLOAD, TxnType.SETTLEMENT})
_GATED = frozenset({TxnType.BALANCE, TxnType.PURCHASE, TxnType.REVERSAL, TxnType.CASH_OUT})
_CARD_REQUESTS = frozenset({TxnType.BALANCE, TxnType.PURCHASE})


class HostService:
    """Decides and posts; called from one writer thread (DESIGN.md)."""

    def __init__(self, db: Database, settings: Settings, clock: Clock | None = None) -> None:
        self.db = db
        self.settings = settings
        self.keys = Keyring.from_settings(settings)
        self.clock = clock or SystemClock()
        self.ctx = HostContext(self.keys, settings, self.clock)

    # -- units ------------------------------------------------------------------

    def process_unit(self, data: bytes) -> bytes | None:
        """A response unit, or ``None`` when the connection must be closed."""
        return self.process_batch([data])[0]

    def process_batch(self, units: Sequence[bytes]) -> list[bytes | None]:
        """Group commit: the answers to ``units``, all decided in ONE database transaction.

        Each answer is returned only after that transaction has committed, so no
        terminal is ever told "approved" about a debit that a crash could still take
        back.  Units are decided in order (a second request for the same card sees
        the first one's debit; a duplicate later in the batch replays the earlier
        one's stored response).  A decline is a normal result and rolls nothing
        back.  Consecutive card requests are decided a run at a time
        (:mod:`switch.host.card_request`).  A unit that raises is taken out of the
        batch and the others are run again from the start in a fresh transaction
        (optimistic: no savepoints, so no subtransaction per request on PostgreSQL);
        one that lost a unique-key race to another switch process is run again once;
        a run whose writing fails (no single unit to blame) is run again one unit at
        a time.  Bounded: every re-run removes a unit, uses up its one retry, or
        splits a run for good.  If the database itself fails (begin, a
        statement, the commit), the whole transaction rolled back and every unit
        still in the batch gets RC 91 (HOST_SPEC §5): nothing moved for any of them.
        """
        return self.commit_batch(self.prepare_batch(units))

    def prepare_batch(self, units: Sequence[bytes]) -> StagedBatch:
        """The first stage of :meth:`process_batch`, without the writer lock: decode,
        classify, answer what needs no database, hash the rest, and (with
        ``group_commit_precheck``) run their MAC, PIN and ARQC checks on a read.

        The runner calls it on its own thread, so a batch is prepared while the one
        before it holds the writer lock (its waits for the database and the commit
        release the GIL).  Nothing here decides money: the precheck's results are
        memoized by every input (switch.host.checks), and a decision whose inputs
        changed in between (a logon rotated the keys) checks afresh.
        """
        answers: list[bytes | None] = []
        pending: list[int] = []
        prepared: list[_Pending | None] = []
        for data in units:
            ready, job = self._prepare(data)
            answers.append(ready)
            prepared.append(job)
            if job is not None:
                pending.append(len(prepared) - 1)
        checks = Checks(self.keys)
        self._precheck(checks, prepared, pending)
        return StagedBatch(answers, prepared, pending, checks)

    def commit_batch(self, staged: StagedBatch) -> list[bytes | None]:
        """The second stage of :meth:`process_batch`: the writer's (see there)."""
        answers, prepared, pending, checks = (
            staged.answers, staged.prepared, staged.pending, staged.checks)
        retried: set[int] = set()
        solo: set[int] = set()
        while pending:
            try:
                decided = self._decide_batch(prepared, pending, checks, solo)
            except RunFailed as failed:
                log.info("writing a run of %d failed (%s): running them one by one",
                         len(failed.indices), type(failed.cause).__name__)
                solo.update(failed.indices)
                continue
            except UnitFailed as failed:
                index, exc = failed.index, failed.cause
                job = prepared[index]
                assert job is not None
                if _lost_a_race(exc) and index not in retried:
                    retried.add(index)
                    log.info("%s tid=%s stan=%s lost a race with another writer (%s): "
                             "running its batch again", job.request.mti,
                             job.request.opt_text(41), job.request.opt_text(11),
                             type(getattr(exc, "orig", exc)).__name__)
                else:
                    answers[index] = self._answer_to_failure(job, exc)
                    pending.remove(index)
                if pending:
                    log.info("batch rolled back for one unit: re-running %d", len(pending))
                continue
            except OperationalError as exc:
                # The transaction rolled back whole: nothing moved.  HOST_SPEC §5: RC 91.
                log.error("ledger unavailable for a batch of %d: %s", len(pending),
                          type(exc).__name__)
                for index in pending:
                    job = prepared[index]
                    assert job is not None
                    answers[index] = job.reply(encode(
                        build_response(job.request, codes.HOST_UNAVAILABLE)))
                return answers
            for index, message in decided.items():
                job = prepared[index]
                assert job is not None
                answers[index] = job.reply(message)
            return answers
        return answers

    def _prepare(self, data: bytes) -> tuple[bytes | None, _Pending | None]:
        """Everything decided without the database: (answer, None) or (None, job)."""
        try:
            unit = decode_unit(data)
        except FramingError as exc:
            log.warning("closing: unusable unit: %s", exc)
            return None, None
        except ProtocolError as exc:
            return self._format_error(data, exc), None
        reply = unit.tpdu.reply().to_bytes()
        request = unit.message
        txn = classify(request)
        if txn is TxnType.UNSUPPORTED or txn in _NOT_YET_SUPPORTED:
            log.info("unsupported %s/%s from %s", request.mti, request.opt_text(3),
                     request.opt_text(41))
            return reply + encode(build_response(request, codes.INVALID_TRANSACTION)), None
        if missing := missing_des(request, txn):
            log.info("format error: %s missing DEs %s", request.mti, missing)
            return reply + encode(build_response(request, codes.FORMAT_ERROR)), None
        if txn is TxnType.ECHO:
            return reply + encode(build_response(request, codes.APPROVED)), None
        raw = data[TPDU_LEN:]
        digest = request_hash(request, raw) if txn in _GATED else ""
        return None, _Pending(reply, request, raw, txn, digest)

    def _precheck(self, checks: Checks, prepared: Sequence[_Pending | None],
                  pending: Sequence[int]) -> None:
        """The batch's MAC, PIN and ARQC checks before its transaction (switch.host.checks),
        when ``group_commit_precheck`` is on."""
        if not self.settings.group_commit_precheck:
            return
        jobs = [job for job in (prepared[i] for i in pending) if job is not None]
        if not any(job.txn in (TxnType.PURCHASE, TxnType.BALANCE) for job in jobs):
            return
        try:
            with self.db.read() as connection:
                warm(checks, connection, [(job.request, job.raw, job.txn) for job in jobs])
        except OperationalError as exc:  # the decision will meet it again and answer 91
            log.warning("precheck skipped: %s", type(exc).__name__)

    def _format_error(self, data: bytes, exc: ProtocolError) -> bytes | None:
        """RC 30 when the MTI can be read, else close (HOST_SPEC §1; DESIGN.md errors)."""
        mti = data[TPDU_LEN : TPDU_LEN + 2].hex()
        if len(mti) != 4 or not mti.isdigit() or mti[2] == "9":
            log.warning("closing: undecodable request: %s", exc)
            return None
        log.info("format error in %s: %s", mti, exc)
        tpdu = Tpdu.from_bytes(data).reply()
        return tpdu.to_bytes() + encode(Message(response_mti(mti), {39: codes.FORMAT_ERROR}))

    def _decide_batch(self, prepared: Sequence[_Pending | None], pending: Sequence[int],
                      checks: Checks, solo: set[int]) -> dict[int, bytes]:
        """One transaction for every pending unit: consecutive card requests as runs
        (:func:`decide_run`), others one by one.  Raises :class:`UnitFailed` naming the
        unit that raised, or :class:`RunFailed` (the transaction is rolled back by then).
        Units in ``solo`` run as runs of one (a run of theirs failed as a whole)."""
        decided: dict[int, bytes] = {}
        with self.db.transaction() as session:
            run: list[CardJob] = []
            for index in pending:
                job = prepared[index]
                assert job is not None
                if job.txn in _CARD_REQUESTS:
                    card_job = CardJob(index, job.request, job.raw, job.txn, job.digest)
                    if index in solo:  # alone: its run before it, then itself
                        decided.update(self._run(session, run, checks))
                        decided.update(self._run(session, [card_job], checks))
                        run = []
                    else:
                        run.append(card_job)
                    continue
                decided.update(self._run(session, run, checks))
                run = []
                decided[index] = self._one(session, index, job, checks)
            decided.update(self._run(session, run, checks))
        return decided

    def _run(self, session: Session, run: list[CardJob], checks: Checks) -> dict[int, bytes]:
        try:
            return decide_run(self.ctx, session, run, checks)
        except (UnitFailed, RunFailed) as failed:
            if isinstance(failed.cause, OperationalError) and not _lost_a_race(failed.cause):
                raise failed.cause from failed  # the database failed: RC 91 for the batch
            if isinstance(failed, RunFailed) and len(failed.indices) == 1:
                raise UnitFailed(failed.indices[0], failed.cause) from failed.cause
            raise

    def _one(self, session: Session, index: int, job: _Pending, checks: Checks) -> bytes:
        try:
            return self._dispatch(session, job, checks)
        except AssertionError:
            raise  # our bug (InvariantError): the whole batch rolls back, loudly
        except OperationalError as exc:
            if not _lost_a_race(exc):
                raise  # the database failed: the whole batch gets RC 91
            raise UnitFailed(index, exc) from exc
        except Exception as exc:
            raise UnitFailed(index, exc) from exc

    def _answer_to_failure(self, job: _Pending, exc: Exception) -> bytes | None:
        """RC 30 for bad content, RC 91 for a race lost twice, else close."""
        request = job.request
        if isinstance(exc, ProtocolError):
            log.info("format error in %s: %s", request.mti, exc)
            return job.reply(encode(build_response(request, codes.FORMAT_ERROR)))
        if isinstance(exc, OperationalError):  # a second lost race (serialization/deadlock)
            log.error("ledger contention for %s: %s", request.mti, type(exc).__name__)
            return job.reply(encode(build_response(request, codes.HOST_UNAVAILABLE)))
        # Unexpected: close without an answer, so the terminal times out and reverses;
        # never a guessed response code.
        log.error("unexpected error handling %s tid=%s stan=%s; closing the connection",
                  request.mti, request.opt_text(41), request.opt_text(11), exc_info=exc)
        return None

    # -- messages ---------------------------------------------------------------

    def _dispatch(self, session: Session, job: _Pending, checks: Checks) -> bytes:
        """The encoded response to a logon, reversal or cash-out, in the batch's
        transaction (card requests go in runs: :func:`decide_run`).

        These run on the ORM, card runs on prepared statements: expiring first lets
        ORM reads see what earlier runs changed, and flushing after lets the next
        run's reads see what this one changed (a logon's new keys).
        """
        session.expire_all()
        answer = self._dispatch_orm(session, job, checks)
        session.flush()
        return answer

    def _dispatch_orm(self, session: Session, job: _Pending, checks: Checks) -> bytes:
        request, txn = job.request, job.txn
        if txn is TxnType.LOGON:
            return encode(logon.handle_logon(self.ctx, session, request))
        assert txn in _GATED, f"no handler for {txn}"
        caller = admit(session, self.keys, request, job.raw, checks)
        if isinstance(caller, Refusal):
            return answer_refusal(self.ctx, session, request, txn.value, caller)
        if txn is TxnType.CASH_OUT:
            unsigned = self._refuse_cash_out(session, request)
        else:
            assert txn is TxnType.REVERSAL, f"card requests are decided in runs, not {txn}"
            unsigned = handle_reversal(self.ctx, session, request, job.digest)
        return mac.sign(caller.tak, unsigned)

    def _refuse_cash_out(self, session: Session, request: Message) -> bytes:
        """HOST_SPEC §4: a BPNT balance is for food only; cash-out (DE 3 01xxxx) is 57."""
        self.ctx.audit(session, actor=f"terminal:{request.text(41)}", action="cash_out",
                       subject=request.text(11), rc=codes.NOT_PERMITTED_KPM,
                       reason="cash-out is not permitted")
        log.info("cash-out refused tid=%s stan=%s", request.text(41), request.text(11))
        response = build_response(request, codes.NOT_PERMITTED_KPM)
        return encode(response.with_fields(de64=mac.PLACEHOLDER))


#: PostgreSQL SQLSTATEs of a lost race: unique_violation, serialization_failure,
#: deadlock_detected.
_RACE_SQLSTATES = frozenset({"23505", "40001", "40P01"})
#: SQLite's names for a unique key hit (only reachable without BEGIN IMMEDIATE).
_RACE_SQLITE_ERRORS = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


def _lost_a_race(exc: Exception) -> bool:
    """A unique-key hit, serialization failure or deadlock against another writer."""
    if not isinstance(exc, (IntegrityError, OperationalError)):
        return False
    return (getattr(exc.orig, "sqlstate", None) in _RACE_SQLSTATES
            or getattr(exc.orig, "sqlite_errorname", None) in _RACE_SQLITE_ERRORS)


@dataclass(frozen=True)
class StagedBatch:
    """A batch after :meth:`HostService.prepare_batch`: the answers known already
    (``None`` where the database must decide), the decoded requests, the indices of
    those still pending, and the checks done so far."""

    answers: list[bytes | None]
    prepared: list[_Pending | None]
    pending: list[int]
    checks: Checks


@dataclass(frozen=True)
class _Pending:
    """A decoded request that needs the database."""

    tpdu_reply: bytes
    request: Message
    raw: bytes  # the message bytes, for the MAC
    txn: TxnType
    digest: str  # HOST_SPEC §4 request content hash (financial requests)

    def reply(self, message: bytes) -> bytes:
        return self.tpdu_reply + message
