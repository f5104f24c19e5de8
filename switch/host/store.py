"""The one store of the host: a batch's reads and writes, for every transaction type.

``with store.batch(requests) as batch`` is one database transaction (SQLite ``BEGIN
IMMEDIATE``; PostgreSQL the writer lock shared and a lock per key, sent with the first
statement: :mod:`switch.db.engine`).  Inside it:

* :meth:`StoreBatch.read` → :class:`~switch.core.facts.BatchFacts`: the batch's
  terminals (with clear working keys, and the TMK of those logging on), cards and
  their wallets, idempotency records (with the transfer a reversal would undo), the
  catalogue, reserved ids, and the audit chain's head: one pipeline block (on
  PostgreSQL one round trip);
* :meth:`StoreBatch.write` ← the decisions' effects: new working keys, card states,
  postings (through :mod:`switch.ledger.postings`, the only code that moves money),
  idempotency records with their stored responses, audit records and the head: one
  pipeline block; then the conditional debits are confirmed.  The commit is the
  block's end.

:meth:`BatchStore.precheck` reads terminals and cards with the same statements but
no writer lock, for the checks run before the transaction.

**What is serialized, and by what** (PostgreSQL; issue 17, docs/SCALING.md).  Batches
of several switch processes run at once; each first locks (:func:`batch_lock_keys`):

* **its terminals** (DE 41): everything keyed by a terminal — its idempotency records
  (the same key on two processes, a reversal racing its original, a void racing
  either), its keys and logon, its open batch, settlement and batch upload, its
  velocity window — is read and written by one batch at a time;
* **its cards** (the PAN's token): a card's ATC, PIN tries, status and dormancy;
* **its cards' wallets**, row locks taken by the card read (``FOR UPDATE OF accounts``):
  a family's two cards in two batches take turns, so each decides on the balance the
  other left (and its answer's DE 54 shows it).

The other rows many keys share are never read-then-written: an e-warong's payable
account and its stock change only by conditional ``UPDATE``s
(``balance_sen >= :debit``, ``on_hand >= :units``) whose shortfall fails the batch
(:class:`~switch.ledger.postings.InsufficientFunds`), which the host then decides
again one request at a time, on fresh balances.  The audit chain is one of
:data:`~switch.db.audit.CHAINS` chains, whichever no other batch holds.  Ids come
from sequences.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import aliased

from switch.audit.chain import Head, link
from switch.core.batch import PURCHASE_CODE, VOID_CODE, BatchEntry, OpenBatch, Upload
from switch.core.effects import (
    AuditEntry,
    ByKind,
    CardChange,
    Effect,
    KeysChange,
    RecordWrite,
    StockMove,
)
from switch.core.facts import (
    BatchFacts,
    Card,
    EwarongRules,
    ItemFacts,
    StoredRecord,
    Terminal,
    TerminalFacts,
)
from switch.core.policy import Policy
from switch.core.precheck import warm
from switch.core.request import Request, RequestKey, key_date
from switch.core.verify import Checks
from switch.db import audit
from switch.db.bulk import Bulk, unnest
from switch.db.engine import Database, lock_key
from switch.db.sql import Prepared, Reservation, Submitted, in_json_list, json_list, pipeline
from switch.db.tables import (
    Account,
    BatchUpload,
    Ewarong,
    EwarongZone,
    Item,
    Kpm,
    RequestRecord,
    Transfer,
)
from switch.db.tables import (
    Card as CardRow,
)
from switch.db.tables import (
    Terminal as TerminalRow,
)
from switch.host.day_end import write_day_end
from switch.host.rules_store import (
    give_back_stock,
    net_units,
    submit_rule_reads,
    submit_rule_writes,
)
from switch.ledger.money import Posting
from switch.ledger.postings import submit_postings
from switch.protocol.errors import InvariantError, ProtocolError
from switch.protocol.routing import TxnType
from switch.security.keyring import Keyring
from switch.security.keys import KeyIntegrityError, pan_token, unwrap_key, wrap_key

#: Requests that read or write an idempotency record (HOST_SPEC §4).
RECORDED = frozenset({TxnType.BALANCE, TxnType.PURCHASE, TxnType.VOID, TxnType.REVERSAL,
                      TxnType.BATCH_UPLOAD, TxnType.SETTLEMENT})
#: Requests that may post a transfer (a purchase debit, a void's pay-back, a reversal).
POSTING = frozenset({TxnType.PURCHASE, TxnType.VOID, TxnType.REVERSAL})
CARD_REQUESTS = frozenset({TxnType.BALANCE, TxnType.PURCHASE, TxnType.VOID})
#: Requests that read their terminal's open batch (HOST_SPEC §4).
BATCHED = frozenset({TxnType.VOID, TxnType.BATCH_UPLOAD, TxnType.SETTLEMENT})
#: Clear working keys kept per process (bounded).  Keyed by the wrapped bytes, so a
#: logon anywhere (new wrapped keys in the database) is a new entry: the cache holds
#: no state, only spares the AES-GCM unwrap (DESIGN.md: stateless instances).
KEY_CACHE_SIZE = 65_536

#: The zones an e-warong serves, comma-separated (a primary-key range; ``NULL``: all).
_ZONES_OF_EWARONG = (select(func.aggregate_strings(
                         EwarongZone.zone_prefix,
                         literal_column("','")))  # type: ignore[arg-type]  # Prepared takes no post-compile bind
                     .where(EwarongZone.ewarong_id == Ewarong.id)
                     .correlate(Ewarong).scalar_subquery())
_TERMINALS = Prepared(
    select(TerminalRow.tid, TerminalRow.status, TerminalRow.tpk_wrapped,
           TerminalRow.tak_wrapped, TerminalRow.tmk_wrapped, Ewarong.mid, Ewarong.status,
           Ewarong.payable_account_id, TerminalRow.batch_number, TerminalRow.logon_stan,
           TerminalRow.logon_at, Ewarong.id, Ewarong.region, Ewarong.open_hhmm,
           Ewarong.close_hhmm, Ewarong.utc_offset_minutes, _ZONES_OF_EWARONG)
    .join(Ewarong, TerminalRow.ewarong_id == Ewarong.id)
    .where(in_json_list("tids", TerminalRow.tid)),
    # PostgreSQL: a probe per terminal and per e-warong (lateral, OFFSET 0 so it is not
    # flattened); as a join the generic plan read every e-warong into a hash for each
    # batch, a scan that grows with the country's e-warongs
    postgresql=text(
        "SELECT t.tid, t.status, t.tpk_wrapped, t.tak_wrapped, t.tmk_wrapped, e.mid, "
        "e.status, e.payable_account_id, t.batch_number, t.logon_stan, t.logon_at, e.id, "
        "e.region, e.open_hhmm, e.close_hhmm, e.utc_offset_minutes, "
        "(SELECT string_agg(z.zone_prefix, ',') FROM ewarong_zones z "
        "WHERE z.ewarong_id = e.id) "
        "FROM jsonb_array_elements_text(CAST(:tids AS jsonb)) AS k(tid) "
        "CROSS JOIN LATERAL (SELECT * FROM terminals WHERE terminals.tid = k.tid "
        "OFFSET 0) AS t "
        "CROSS JOIN LATERAL (SELECT * FROM ewarongs WHERE ewarongs.id = t.ewarong_id "
        "OFFSET 0) AS e"))
_CARDS_SELECT = (
    select(CardRow.pan_token, CardRow.id, CardRow.pan_masked, CardRow.psn,
           CardRow.expiry_yymm, CardRow.pin_offset, Kpm.status.label("kpm_status"),
           Account.id.label("wallet_account_id"), CardRow.status, CardRow.wrong_pin_count,
           CardRow.last_atc, CardRow.last_used_at, Account.balance_sen, Kpm.zone,
           CardRow.issued_at, CardRow.reactivated_at)
    .join(Kpm, CardRow.kpm_id == Kpm.id)
    .join(Account, Kpm.wallet_account_id == Account.id)
    .where(in_json_list("tokens", CardRow.pan_token)))
_CARDS = Prepared(_CARDS_SELECT)
#: The batch's read: the wallets locked until the commit (PostgreSQL), so a family's two
#: cards in two processes' batches take turns and each decides on (and shows, in DE 54)
#: the balance the other left.  SQLite: its one writer already holds everything.
_CARDS_LOCKING_WALLETS = Prepared(_CARDS_SELECT.with_for_update(of=Account))
_CREDITED = aliased(Account)
_RECORDS = Prepared(
    select(RequestRecord.tid, RequestRecord.local_date, RequestRecord.stan, RequestRecord.kind,
           RequestRecord.request_hash, RequestRecord.response_code,
           RequestRecord.response_unit, RequestRecord.transfer_id, RequestRecord.amount_sen,
           Transfer.amount_sen, Transfer.debit_account_id, Transfer.credit_account_id,
           RequestRecord.id, RequestRecord.processing_code, RequestRecord.original_record_id,
           RequestRecord.voided_by_record_id, _CREDITED.balance_sen, RequestRecord.basket,
           RequestRecord.stock_ewarong_id)
    .outerjoin(Transfer, Transfer.id == RequestRecord.transfer_id)
    .outerjoin(_CREDITED, _CREDITED.id == Transfer.credit_account_id)
    .where(in_json_list("keys", RequestRecord.tid, RequestRecord.key_date,
                        RequestRecord.stan), RequestRecord.created_at >= bindparam("cutoff")),
    # PostgreSQL: one index probe per key, whatever the planner thinks of the list
    # (OFFSET 0 keeps the lateral subquery from being flattened into a hash join)
    postgresql=text(
        "SELECT r.tid, r.local_date, r.stan, r.kind, r.request_hash, r.response_code, "
        "r.response_unit, r.transfer_id, r.amount_sen, t.amount_sen, t.debit_account_id, "
        "t.credit_account_id, r.id, r.processing_code, r.original_record_id, "
        "r.voided_by_record_id, a.balance_sen, r.basket, r.stock_ewarong_id "
        "FROM jsonb_array_elements(CAST(:keys AS jsonb)) AS k CROSS JOIN LATERAL ("
        "SELECT * FROM request_records WHERE tid = k ->> 0 AND key_date = k ->> 1 "
        "AND stan = k ->> 2 AND created_at >= :cutoff OFFSET 0) AS r "
        "LEFT JOIN transfers t ON t.id = r.transfer_id "
        "LEFT JOIN accounts a ON a.id = t.credit_account_id"))
_REVERSING = aliased(Transfer)
#: HOST_SPEC §4: a terminal's open batch, the approved purchases and voids no settlement
#: has closed, each with whether a reversal undid it.
_OPEN_BATCH = Prepared(
    select(RequestRecord.tid, RequestRecord.id, RequestRecord.local_date, RequestRecord.stan,
           RequestRecord.processing_code, RequestRecord.amount_sen, RequestRecord.invoice,
           RequestRecord.transfer_id, Transfer.debit_account_id, Transfer.credit_account_id,
           _REVERSING.id, RequestRecord.voided_by_record_id, RequestRecord.original_record_id,
           RequestRecord.basket, RequestRecord.stock_ewarong_id)
    .outerjoin(Transfer, Transfer.id == RequestRecord.transfer_id)
    .outerjoin(_REVERSING, _REVERSING.reverses_transfer_id == RequestRecord.transfer_id)
    .where(in_json_list("tids", RequestRecord.tid), RequestRecord.settlement_id.is_(None),
           RequestRecord.kind == "request", RequestRecord.response_code == "00",
           or_(RequestRecord.processing_code == PURCHASE_CODE,
               RequestRecord.processing_code == VOID_CODE))
    .order_by(RequestRecord.id))
_PENDING_UPLOADS = Prepared(
    select(BatchUpload.id, BatchUpload.tid, BatchUpload.batch_number,
           BatchUpload.processing_code, BatchUpload.amount_sen, BatchUpload.rrn,
           BatchUpload.approval_code, BatchUpload.invoice)
    .where(in_json_list("tids", BatchUpload.tid), BatchUpload.settlement_id.is_(None))
    .order_by(BatchUpload.id))
_CATALOGUE = Prepared(select(Item.code, Item.category, Item.allowed))

_KEYS_PARAMS = {"key_tid": "tid", "new_tpk": "tpk_wrapped", "new_tak": "tak_wrapped",
                "new_logon_stan": "logon_stan", "new_logon_at": "logon_at"}
_SET_KEYS = Bulk(
    Prepared(update(TerminalRow).where(TerminalRow.tid == bindparam("key_tid")).values(
        tpk_wrapped=bindparam("new_tpk"), tak_wrapped=bindparam("new_tak"),
        logon_stan=bindparam("new_logon_stan"), logon_at=bindparam("new_logon_at"))),
    "UPDATE terminals SET tpk_wrapped = v.new_tpk, tak_wrapped = v.new_tak, "
    "logon_stan = v.new_logon_stan, logon_at = v.new_logon_at FROM "
    + unnest(TerminalRow.__table__, _KEYS_PARAMS) + " WHERE terminals.tid = v.key_tid",
    TerminalRow.__table__, _KEYS_PARAMS, arrays=True)
_CARD_STATE_PARAMS = {"card_id": "id", "new_atc": "last_atc",
                      "new_wrong_pins": "wrong_pin_count", "new_status": "status",
                      "new_used_at": "last_used_at"}
_SET_CARD_STATE = Bulk(
    Prepared(update(CardRow).where(CardRow.id == bindparam("card_id")).values(
        last_atc=bindparam("new_atc"), wrong_pin_count=bindparam("new_wrong_pins"),
        status=bindparam("new_status"), last_used_at=bindparam("new_used_at"))),
    "UPDATE cards SET last_atc = v.new_atc, wrong_pin_count = v.new_wrong_pins, "
    "status = v.new_status, last_used_at = v.new_used_at FROM "
    + unnest(CardRow.__table__, _CARD_STATE_PARAMS) + " WHERE cards.id = v.card_id",
    CardRow.__table__, _CARD_STATE_PARAMS, arrays=True)
_RECORD_COLUMNS = ("id", "tid", "local_date", "key_date", "stan", "kind", "mti",
                   "processing_code", "amount_sen", "request_hash", "response_code",
                   "response_unit", "transfer_id", "invoice", "original_record_id",
                   "card_id", "basket", "stock_ewarong_id", "created_at")
INSERT_RECORDS = Bulk.insert(RequestRecord.__table__, _RECORD_COLUMNS,
                              Prepared(insert(RequestRecord), column_keys=_RECORD_COLUMNS))


@lru_cache(maxsize=KEY_CACHE_SIZE)
def _unwrap_cached(kek: bytes, wrapped: bytes, context: str) -> bytes:
    return unwrap_key(kek, wrapped, context)


class BatchStore:
    """The host's reads and writes (see the module); one per :class:`HostService`."""

    def __init__(self, db: Database, keys: Keyring) -> None:
        self.db = db
        self.keys = keys

    @contextmanager
    def batch(self, requests: Sequence[Request]) -> Iterator[StoreBatch]:
        """One transaction for ``requests``, holding their keys' locks: committed when the
        block ends, rolled back on an exception."""
        pans = self._card_tokens(requests)
        with self.db.transaction(keys=batch_lock_keys(requests, pans)) as session:
            yield StoreBatch(self, session.connection(), pans)

    def precheck(self, requests: Sequence[Request], checks: Checks) -> None:
        """The card requests' MAC, PIN and ARQC checks into ``checks``, from a read that
        takes no writer lock (nothing read here is trusted under the lock)."""
        wanted = [r for r in requests if r.txn in CARD_REQUESTS]
        if not wanted:
            return
        with self.db.read() as connection:
            terminals = self._terminals(_TERMINALS.submit(connection, _tids(wanted)), set())
            pans = self._card_tokens(wanted)
            cards, _ = self._cards(self._submit_cards(connection, pans), pans)
        warm(checks, terminals, cards, wanted)

    # -- reading ------------------------------------------------------------------

    def _card_tokens(self, requests: Iterable[Request]) -> dict[str, str]:
        """The PANs of the card requests, by token."""
        pans: dict[str, str] = {}
        for request in requests:
            if request.txn in CARD_REQUESTS:
                try:
                    pan = request.pan
                except ProtocolError:
                    continue  # its decision answers it (30)
                pans[pan_token(self.keys.pan_token_key, pan)] = pan
        return pans

    @staticmethod
    def _submit_cards(connection: Connection, pans: dict[str, str], *,
                      lock_wallets: bool = False) -> Submitted | None:
        if not pans:
            return None
        statement = _CARDS_LOCKING_WALLETS if lock_wallets else _CARDS
        return statement.submit(connection, {"tokens": json_list(pans)})

    def _terminals(self, read: Submitted, logging_on: set[str]) -> dict[str, Terminal]:
        kek = self.keys.kek
        terminals = {}
        for (tid, status, tpk, tak, tmk, mid, ewarong_status, payable, _batch, logon_stan,
             logon_at, ewarong_id, region, open_hhmm, close_hhmm, offset,
             zones) in read.rows():
            facts = TerminalFacts(
                tid, status == "active", mid, ewarong_status == "active",
                _unwrap_cached(kek, bytes(tpk), f"TPK:{tid}") if tpk else None,
                _unwrap_cached(kek, bytes(tak), f"TAK:{tid}") if tak else None,
                logon_stan, logon_at)
            terminals[tid] = Terminal(
                facts, int(payable), _tmk(kek, tid, tmk) if tid in logging_on else None,
                int(ewarong_id), EwarongRules(region or "", open_hhmm, close_hhmm, int(offset),
                                              tuple(sorted(zones.split(","))) if zones
                                              else ()))
        return terminals

    @staticmethod
    def _cards(read: Submitted | None,
               pans: dict[str, str]) -> tuple[dict[str, Card], dict[int, int]]:
        cards: dict[str, Card] = {}
        balances: dict[int, int] = {}
        if read is None:
            return cards, balances
        for (token, card_id, masked, psn, expiry, offset, kpm_status, wallet, status, wrong,
             atc, used_at, balance_sen, zone, issued_at, reactivated_at) in read.rows():
            if int(balance_sen) < 0:
                raise InvariantError(f"wallet {wallet} holds {balance_sen} sen (below zero)")
            balances[int(wallet)] = int(balance_sen)
            cards[pans[token]] = Card(
                int(card_id), masked, psn, expiry, offset, kpm_status == "active",
                int(wallet), status, int(wrong), atc, used_at, issued_at, reactivated_at, zone)
        return cards, balances


def _tmk(kek: bytes, tid: str, wrapped: bytes | None) -> bytes | None:
    """The clear TMK of a terminal logging on, or ``None`` when none is usable (the
    logon is then refused, :mod:`switch.core.logon`)."""
    if not wrapped:
        return None
    try:
        return unwrap_key(kek, bytes(wrapped), f"TMK:{tid}")
    except KeyIntegrityError:
        return None


def batch_lock_keys(requests: Iterable[Request], pans: Iterable[str]) -> set[int]:
    """The advisory lock keys of a batch: its terminals and its cards' tokens (see the
    module)."""
    keys = {lock_key("T", request.message.text(41)) for request in requests}
    keys.update(lock_key("C", token) for token in pans)
    return keys


def _tids(requests: Iterable[Request]) -> dict[str, str]:
    return {"tids": json_list(request.message.text(41) for request in requests)}


@dataclass
class StoreBatch:
    """One batch's transaction: :meth:`read`, then :meth:`write` (see the module)."""

    store: BatchStore
    connection: Connection
    #: the batch's card PANs by token (:meth:`BatchStore._card_tokens`)
    pans: dict[str, str]
    _head: Head | None = None
    _policy: Policy = Policy()

    def read(self, requests: Sequence[Request], *, now: datetime, checks: Checks,
             max_pin_tries: int, window: timedelta, policy: Policy | None = None,
             ) -> BatchFacts:
        """Everything the decisions on ``requests`` read, in one pipeline block; records
        only from within the idempotency ``window`` (HOST_SPEC §4)."""
        connection, store = self.connection, self.store
        policy = policy or Policy()
        recorded = [r for r in requests if r.txn in RECORDED and not r.missing]
        postings = sum(r.txn in POSTING for r in requests)
        logging_on = {r.message.text(41) for r in requests if r.txn is TxnType.LOGON}
        batched = {r.message.text(41): "" for r in requests if r.txn in BATCHED}
        at = now.astimezone(UTC)  # as the records' key dates are written
        keys = json_list((r.message.text(41), key_date(r.message.opt_text(13) or "", at),
                          r.message.text(11)) for r in recorded)
        # every answer but a logon's takes an RRN, refusals included (HOST_SPEC §3)
        rrns = sum(r.txn is not TxnType.LOGON for r in requests)
        with pipeline(connection):
            terminals_read = _TERMINALS.submit(connection, _tids(requests))
            records_read = (_RECORDS.submit(connection, {"keys": keys, "cutoff": now - window})
                            if recorded else None)
            pans = self.pans
            cards_read = store._submit_cards(connection, pans, lock_wallets=True)
            batch_reads = ((_OPEN_BATCH.submit(connection, {"tids": json_list(batched)}),
                            _PENDING_UPLOADS.submit(connection, {"tids": json_list(batched)}))
                           if batched else None)
            record_ids = Reservation(connection, "request_records", rrns)
            transfer_ids = Reservation(connection, "transfers", postings)
            catalogue_read = (_CATALOGUE.submit(connection)
                              if any(r.txn is TxnType.PURCHASE for r in requests) else None)
            head_read = audit.submit_head(connection)
            rules_read = submit_rule_reads(connection, requests, policy, now,
                                           {pan: token for token, pan in pans.items()})
        self._head = audit.head_of(head_read, connection)
        cards, balances = store._cards(cards_read, pans)
        records = _records(records_read, balances)
        recent_cards, window_counts = rules_read.recent_cards()
        stock, reference_prices = rules_read.shelves_and_prices()
        self._policy = policy
        return BatchFacts(
            now=now, checks=checks, max_pin_tries=max_pin_tries,
            terminals=store._terminals(terminals_read, logging_on),
            cards=cards,
            balances=balances, records=records,
            open_batches=(_open_batches(terminals_read.rows(), *batch_reads, batched)
                          if batch_reads else {}),
            catalogue={code: ItemFacts(code, category, bool(allowed))
                       for code, category, allowed in
                       (catalogue_read.rows() if catalogue_read else ())},
            record_ids=record_ids.ids(), transfer_ids=transfer_ids.ids(), policy=policy,
            stock=stock, reference_prices=reference_prices,
            recent_cards=recent_cards, window_counts=window_counts)

    def write(self, effects: Sequence[Effect], *, now: datetime) -> None:
        """The batch's effects, in one pipeline block; then the debits are confirmed."""
        assert self._head is not None, "a batch is read before it is written"
        connection, kek = self.connection, self.store.keys.kek
        grouped = ByKind(effects)
        keys = {change.tid: change for change in grouped.of(KeysChange)}
        cards = {change.card_id: change  # the last state of each card
                 for change in grouped.of(CardChange)}
        created_at = now.astimezone(UTC)
        records = [_record_row(record, created_at) for record in grouped.of(RecordWrite)]
        rows, head = link(self.store.keys.audit_key, self._head, grouped.of(AuditEntry))
        deltas = net_units(grouped.of(StockMove))
        with pipeline(connection):
            _SET_KEYS.submit(connection, [
                {"key_tid": tid, "new_tpk": wrap_key(kek, change.tpk, f"TPK:{tid}"),
                 "new_tak": wrap_key(kek, change.tak, f"TAK:{tid}"),
                 "new_logon_stan": change.stan, "new_logon_at": change.at.astimezone(UTC)}
                for tid, change in keys.items()])
            _SET_CARD_STATE.submit(connection, [
                {"card_id": card_id, "new_atc": change.last_atc,
                 "new_wrong_pins": change.wrong_pin_count, "new_status": change.status,
                 "new_used_at": (change.last_used_at.astimezone(UTC)
                                 if change.last_used_at is not None else None)}
                for card_id, change in cards.items()])
            posted = submit_postings(connection, grouped.of(Posting), now)
            INSERT_RECORDS.submit(connection, records)
            audit.submit_rows(connection, rows, head)
            stock_taken = submit_rule_writes(connection, grouped, deltas, created_at,
                                             self._policy)
        posted.confirm()
        stock_taken.confirm()
        give_back_stock(connection, deltas)
        write_day_end(connection, grouped, created_at)
        self._head = head


def _records(read: Submitted | None,
             balances: dict[int, int]) -> dict[RequestKey, dict[str, StoredRecord]]:
    """The records by key; the balance of each account a reversal would debit (what the
    original credited) joins ``balances``."""
    records: dict[RequestKey, dict[str, StoredRecord]] = {}
    if read is None:
        return records
    for (tid, date, stan, kind, digest, rc, unit, transfer_id, record_sen, transfer_sen,
         debit, credit, record_id, code, original, voided_by, credited_sen, basket,
         stock_ewarong_id) in read.rows():
        records.setdefault(RequestKey(tid, date, stan), {})[kind] = StoredRecord(
            kind, tid, stan, digest, rc, bytes(unit), transfer_id,
            int(transfer_sen if transfer_sen is not None else record_sen), debit, credit,
            int(record_id), code, original, voided_by, basket, stock_ewarong_id)
        if credit is not None and credited_sen is not None:
            balances.setdefault(int(credit), int(credited_sen))
    return records


def _open_batches(terminal_rows: list[Any], entries: Submitted, uploads: Submitted,
                  tids: Iterable[str]) -> dict[str, OpenBatch]:
    """HOST_SPEC §4: the open batch of each of ``tids`` (a known terminal's)."""
    numbers = {row[0]: row[8] for row in terminal_rows}
    batches = {tid: OpenBatch(tid, numbers[tid]) for tid in tids if tid in numbers}
    for (tid, record_id, date, stan, code, amount_sen, invoice, transfer_id, debit, credit,
         reversing, voided_by, original, basket, stock_ewarong_id) in entries.rows():
        if tid in batches:
            batches[tid].entries[int(record_id)] = BatchEntry(
                int(record_id), RequestKey(tid, date, stan), code, int(amount_sen), invoice,
                transfer_id, debit, credit, reversing is not None, voided_by, original, basket,
                stock_ewarong_id)
    for (upload_id, tid, number, code, amount_sen, rrn, approval, invoice) in uploads.rows():
        if tid in batches:
            batches[tid].uploads.append(Upload(int(upload_id), tid, number, code,
                                               int(amount_sen), rrn, approval, invoice))
    return batches


def _record_row(record: RecordWrite, created_at: datetime) -> dict[str, Any]:
    key = record.key
    return {"id": record.record_id, "tid": key.tid, "local_date": key.local_date,
            "key_date": key_date(key.local_date, created_at), "stan": key.stan,
            "kind": record.kind, "mti": record.mti,
            "processing_code": record.processing_code, "amount_sen": record.amount_sen,
            "request_hash": record.request_hash, "response_code": record.response_code,
            "response_unit": record.response_unit, "transfer_id": record.transfer_id,
            "invoice": record.invoice, "original_record_id": record.original_record_id,
            "card_id": record.card_id, "basket": record.basket,
            "stock_ewarong_id": record.stock_ewarong_id, "created_at": created_at}
