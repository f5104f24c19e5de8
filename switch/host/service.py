"""HostService: request units in, response units out (HOST_SPEC §1-7).

A batch goes through in two stages (the runner calls them on two threads):

1. :meth:`HostService.prepare_batch`, without the writer lock: decode, classify,
   answer what needs no facts (echo, unknown transaction 12, missing DE 30,
   undecodable 30 or close), hash the rest (§4), draw the keys a logon hands out,
   and (``group_commit_precheck``) run the MAC, PIN and ARQC checks early;
2. :meth:`HostService.commit_batch`: in one database transaction, read the batch's
   facts (:mod:`switch.host.store`), decide each request in order with the pure
   deciders of :mod:`switch.core.decide` (each sees what the ones before it did),
   write every effect, commit; then write the log lines and sign the answers
   (the one place a response is signed, with the caller's current TAK; a replayed
   response is byte-identical except for the MAC, §4).

No answer leaves before the commit, so no terminal is told "approved" about a debit
that a crash could still take back.  A request the decision cannot use
(``ProtocolError``) is answered 30 and changes nothing; one that hits our bug in a
decider is closed without an answer (the terminal reverses), and its neighbours go
on.

The database failing (§5):

* before the commit (begin, a read, a write): the transaction rolled back whole, so
  nothing of the batch was committed and every request gets RC 91
  (:func:`~switch.core.decide.decide_unavailable`): with DE 37, and signed with the
  TAK this process last answered the terminal under (:class:`KnownTaks`) when the
  request's MAC verifies under it; unsigned only when the keys cannot be read;
* in the commit itself (the connection broke, the disk failed): the batch may have
  landed or not, and the switch cannot know, so no request of it is answered (the
  connection is closed, ``None``) and each terminal's reversal settles the outcome.
  Nothing is retried: a 91 then could deny a debit that landed.  Except where the
  error itself says the commit did not land (SQLite refusing it whole: a full disk,
  a read-only or busy file): that is the first case, RC 91.

A lost race with another switch process (a unique key, a serialization failure, a
deadlock) decides the batch again once; a write that fails otherwise (no single
request to blame) is decided again a request at a time, so only the one whose write
fails loses its answer.  A request alone whose conditional debit fell short (another
process drew on the same wallet, payable account or shelf since it read it) is
decided again once, on fresh balances, before it loses its answer.  A broken
invariant (:class:`InvariantError`) is never answered: it goes up to the runner,
which stops the process.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from switch.clock import Clock, SystemClock
from switch.core.decide import answer_at_once, decide, decide_unavailable, format_error
from switch.core.effects import Decision, Effect, LogLine
from switch.core.facts import BatchFacts
from switch.core.policy import Policy
from switch.core.replies import request_hash
from switch.core.request import UNRECORDED_RRNS, Request
from switch.core.verify import Checks
from switch.db.engine import Database
from switch.host.known_taks import KnownTaks
from switch.host.observer import NO_OBSERVER, HostObserver
from switch.host.rules_store import StockShortfall
from switch.host.store import BatchStore
from switch.ledger.postings import InsufficientFunds, LedgerError
from switch.protocol import codes
from switch.protocol.errors import FramingError, ProtocolError
from switch.protocol.message import Message, encode
from switch.protocol.routing import TxnType, classify, missing_des, response_mti
from switch.protocol.unit import TPDU_LEN, Tpdu, decode_unit
from switch.security import mac
from switch.security.keyring import Keyring
from switch.security.keys import new_double_length_key
from switch.settings import Settings

log = logging.getLogger("bpnt.host")

#: Requests whose content is hashed for HOST_SPEC §4 (they are, or may be, recorded).
_HASHED = frozenset({TxnType.BALANCE, TxnType.PURCHASE, TxnType.VOID, TxnType.REVERSAL,
                     TxnType.BATCH_UPLOAD, TxnType.SETTLEMENT})
#: What the connection gets when no answer may be given: it is closed.
CLOSE = Decision(None)


class HostService:
    """Decides and posts; called from one writer thread (DESIGN.md)."""

    def __init__(self, db: Database, settings: Settings, clock: Clock | None = None, *,
                 observer: HostObserver = NO_OBSERVER) -> None:
        self.db = db
        #: Told of each batch and each database error (the server's metrics).
        self.observer = observer
        self.settings = settings
        self.keys = Keyring.from_settings(settings)
        self.policy = Policy.of(settings)
        self.clock = clock or SystemClock()
        self.store = BatchStore(db, self.keys)
        #: Each terminal's TAK as of its last committed answer (signs a 91, §6).
        self.known_taks = KnownTaks()

    def process_unit(self, data: bytes) -> bytes | None:
        """A response unit, or ``None`` when the connection must be closed."""
        return self.process_batch([data])[0]

    def process_batch(self, units: Sequence[bytes]) -> list[bytes | None]:
        """Group commit: the answers to ``units``, decided in one database transaction
        (see the module)."""
        return self.commit_batch(self.prepare_batch(units))

    # -- stage 1: without the database's writer lock ------------------------------------

    def prepare_batch(self, units: Sequence[bytes]) -> StagedBatch:
        """Decode and answer what needs no facts (see the module)."""
        answers: list[bytes | None] = []
        jobs: list[_Job] = []
        for index, data in enumerate(units):
            answer, job = self._prepare(data)
            answers.append(answer)
            if job is not None:
                jobs.append(_Job(index, job[0], job[1]))
        checks = Checks(self.keys)
        if self.settings.group_commit_precheck and jobs:
            try:
                self.store.precheck([job.request for job in jobs], checks)
            except OperationalError as exc:  # the decision will meet it again and answer 91
                log.warning("precheck skipped: %s", type(exc).__name__)
        return StagedBatch(answers, jobs, checks)

    def _prepare(self, data: bytes) -> tuple[bytes | None, tuple[bytes, Request] | None]:
        """(answer, None), or (None, (TPDU reply, request)) for the batch's transaction."""
        try:
            unit = decode_unit(data)
        except FramingError as exc:
            log.warning("closing: unusable unit: %s", exc)
            return None, None
        except ProtocolError as exc:
            return _undecodable(data, exc), None
        tpdu = unit.tpdu.reply().to_bytes()
        message = unit.message
        txn = classify(message)
        missing = tuple(missing_des(message, txn))
        ready = answer_at_once(message, txn, missing)
        if ready is not None:
            _write_log(ready.effects)
            return _answer(tpdu, ready), None
        raw = data[TPDU_LEN:]
        digest = request_hash(message, raw) if txn in _HASHED else ""
        new_keys = ((new_double_length_key(), new_double_length_key())
                    if txn is TxnType.LOGON else None)
        return None, (tpdu, Request(message, raw, txn, digest, new_keys, missing))

    # -- stage 2: the writer -------------------------------------------------------------

    def commit_batch(self, staged: StagedBatch) -> list[bytes | None]:
        """Decide and write ``staged`` in one transaction; the answers after its commit."""
        started = time.perf_counter()
        answers = list(staged.answers)
        if staged.jobs:
            decided = self._decide_with_retries(staged.jobs, staged.checks)
            for job, decision in zip(staged.jobs, decided, strict=True):
                answers[job.index] = job.answer(decision)
        self.observer.batch_committed(len(answers), time.perf_counter() - started)
        return answers

    def _decide_with_retries(self, jobs: Sequence[_Job], checks: Checks) -> list[Decision]:
        for attempt in (1, 2):
            try:
                return self._decide_and_write(jobs, checks)
            except _CommitFailed as failed:
                self.observer.database_error("commit_failed")
                log.error("the commit of a batch of %d failed (%s): it may have landed; "
                          "closing without an answer, the terminals' reversals settle it",
                          len(jobs), type(failed.error.orig).__name__)
                return [CLOSE] * len(jobs)
            except DBAPIError as exc:
                if _lost_a_race(exc) and attempt == 1:
                    self.observer.database_error("race")
                    log.info("a batch of %d lost a race with another writer (%s): deciding "
                             "it again", len(jobs), type(exc.orig).__name__)
                    continue
                if _lost_a_race(exc) or isinstance(exc, OperationalError):
                    self.observer.database_error("unavailable")
                    log.error("ledger unavailable for a batch of %d: %s", len(jobs),
                              type(exc.orig).__name__)
                    return [self._unavailable(job, checks) for job in jobs]
                self.observer.database_error("other")
                return self._one_by_one(jobs, checks, exc)
            except (InsufficientFunds, StockShortfall) as exc:
                if attempt == 1 and len(jobs) == 1:
                    # Another process's debit of a row this request shares (a wallet
                    # of two cards, a payable account, a shelf) landed between its
                    # read and its conditional UPDATE (issue 17): decided again, it
                    # sees that debit.  A batch of several is re-run one by one first.
                    self.observer.database_error("race")
                    log.info("a request lost a race for a shared balance or shelf (%s): "
                             "deciding it again", type(exc).__name__)
                    continue
                return self._one_by_one(jobs, checks, exc)
            except LedgerError as exc:
                return self._one_by_one(jobs, checks, exc)
        raise AssertionError("unreachable: the second attempt returns")

    def _one_by_one(self, jobs: Sequence[_Job], checks: Checks,
                    exc: Exception) -> list[Decision]:
        """A write failed with no request to blame: each request in a transaction of its
        own, so only the one whose write fails loses its answer (closed, never a guess)."""
        log.info("writing a batch of %d failed (%s): deciding them one by one", len(jobs),
                 type(exc).__name__)
        if len(jobs) == 1:
            log.error("writing %s tid=%s stan=%s failed; closing the connection",
                      jobs[0].request.message.mti, jobs[0].request.message.opt_text(41),
                      jobs[0].request.message.opt_text(11), exc_info=exc)
            return [CLOSE]
        return [self._decide_with_retries([job], checks)[0] for job in jobs]

    def _decide_and_write(self, jobs: Sequence[_Job], checks: Checks) -> list[Decision]:
        """One transaction: read the facts, decide in order, write the effects, commit.
        A database error in the commit raises :class:`_CommitFailed`."""
        now = self.clock.now()
        requests = [job.request for job in jobs]
        decisions: list[Decision] = []
        effects: list[Effect] = []
        written = False
        try:
            with self.store.batch(requests) as batch:
                facts = batch.read(requests, now=now, checks=checks,
                                   max_pin_tries=self.settings.max_pin_tries,
                                   window=timedelta(days=self.settings.idempotency_window_days),
                                   policy=self.policy)
                for request in requests:
                    decision = _decide_one(request, facts)
                    facts.apply(decision.effects)
                    effects.extend(decision.effects)
                    decisions.append(decision)
                batch.write(effects, now=now)
                written = True  # all that is left is the commit, as the block ends
        except DBAPIError as exc:
            if written and not _commit_surely_failed(exc):
                raise _CommitFailed(exc) from exc
            raise
        _write_log(effects)  # committed: now the lines are true
        self.known_taks.remember_committed(requests, decisions)
        return decisions

    def _unavailable(self, job: _Job, checks: Checks) -> Decision:
        """HOST_SPEC §5: RC 91, nothing of the batch committed (it rolled back whole)."""
        message = job.request.message
        tid = message.opt_text(41)
        return decide_unavailable(job.request, self.known_taks.tak(tid) if tid else None,
                                  checks, secrets.randbelow(UNRECORDED_RRNS))


def _decide_one(request: Request, facts: BatchFacts) -> Decision:
    """The decision, or RC 30 for unusable content, or a close for our bug in a decider
    (an invariant broken goes up: never answered)."""
    try:
        return decide(request, facts)
    except ProtocolError as exc:
        return format_error(request, facts, exc)
    except AssertionError:
        raise
    except Exception:
        message = request.message
        log.error("unexpected error deciding %s tid=%s stan=%s; closing the connection",
                  message.mti, message.opt_text(41), message.opt_text(11), exc_info=True)
        return CLOSE


def _answer(tpdu: bytes, decision: Decision) -> bytes | None:
    """The response unit: the one place a response is signed (HOST_SPEC §6)."""
    if decision.response is None:
        return None
    if decision.sign_with is None:
        return tpdu + decision.response
    return tpdu + mac.sign(decision.sign_with, decision.response)


def _undecodable(data: bytes, exc: ProtocolError) -> bytes | None:
    """RC 30 when the MTI can be read, else close (HOST_SPEC §1; DESIGN.md errors)."""
    mti = data[TPDU_LEN : TPDU_LEN + 2].hex()
    if len(mti) != 4 or not mti.isdigit() or mti[2] == "9":
        log.warning("closing: undecodable request: %s", exc)
        return None
    log.info("format error in %s: %s", mti, exc)
    tpdu = Tpdu.from_bytes(data).reply()
    return tpdu.to_bytes() + encode(Message(response_mti(mti), {39: codes.FORMAT_ERROR}))


def _write_log(effects: Sequence[Effect]) -> None:
    for effect in effects:
        if isinstance(effect, LogLine) and log.isEnabledFor(effect.level):
            # What log.log does, less its look up the stack for the caller's file and
            # line (a line per request; the log format shows neither)
            log.handle(log.makeRecord(log.name, effect.level, __file__, 0, effect.msg,
                                      effect.args, None))


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


#: SQLite's primary result codes for a COMMIT that it refused whole (nothing of the
#: transaction landed: a full disk or a read-only file stops it before the commit
#: record is written; a busy or locked file, or a deferred constraint, before it
#: starts).  An I/O error is not among them: it may come after the commit record.
_SQLITE_REFUSED_COMMIT = frozenset({5, 6, 8, 13, 19})  # BUSY LOCKED READONLY FULL CONSTRAINT


def _commit_surely_failed(exc: DBAPIError) -> bool:
    """An error in the commit that says the commit did not land (SQLite only: a local
    file answers for itself; a server's connection can break after it committed)."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in _SQLITE_REFUSED_COMMIT


class _CommitFailed(Exception):
    """The database raised in the commit of a batch that had written everything: it may
    have landed (HOST_SPEC §5: then no answer)."""

    def __init__(self, error: DBAPIError) -> None:
        super().__init__(f"commit failed: {type(error.orig).__name__}")
        self.error = error


@dataclass(frozen=True)
class _Job:
    """A request of the batch that needs its facts, with its place in the batch and the
    TPDU its answer goes back under."""

    index: int
    tpdu: bytes
    request: Request

    def answer(self, decision: Decision) -> bytes | None:
        return _answer(self.tpdu, decision)


@dataclass(frozen=True)
class StagedBatch:
    """A batch after :meth:`HostService.prepare_batch`: the answers known already
    (``None`` where the facts must decide), the requests that need them, and the
    checks done so far."""

    answers: list[bytes | None]
    jobs: list[_Job]
    checks: Checks
