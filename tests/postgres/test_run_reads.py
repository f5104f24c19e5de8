"""The hot path's run reads: a JSON list parameter (``in_json_list``) finds exactly
the rows of its keys on both engines, and on SQLite every run read probes an index
(a row-value ``IN`` of constants scanned the whole ``request_records`` table, so
each run got slower as the day's records grew)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, select

from switch.admin.demo import build_world, seed_database
from switch.db.schema import open_database
from switch.db.sql import Prepared, in_json_list, json_list
from switch.db.tables import Card as CardRow
from switch.db.tables import RequestRecord, TerminalCard
from switch.db.tables import Terminal as TerminalRow
from switch.host import rules_store, store
from switch.security.keyring import Keyring
from switch.settings import Settings

_BY_KEY = Prepared(
    select(RequestRecord.tid, RequestRecord.local_date, RequestRecord.stan, RequestRecord.kind,
           RequestRecord.created_at)
    .where(in_json_list("keys", RequestRecord.tid, RequestRecord.local_date,
                        RequestRecord.stan)))
_BY_TID = Prepared(select(RequestRecord.stan).where(in_json_list("tids", RequestRecord.tid)))


def _record(tid: str, date: str, stan: str, kind: str = "request") -> dict[str, object]:
    return {"tid": tid, "local_date": date, "key_date": f"2026{date}", "stan": stan,
            "kind": kind, "mti": "0210",
            "processing_code": "000000", "amount_sen": 0, "request_hash": "h" * 64,
            "response_code": "00", "response_unit": b"\x00",
            "created_at": datetime(2026, 12, 1, 9, 30, tzinfo=UTC)}


def test_json_list_finds_exactly_its_keys(any_url: str) -> None:
    db = open_database(any_url)
    try:
        with db.transaction() as session:
            connection = session.connection()
            connection.execute(insert(RequestRecord), [
                _record("T0000001", "1201", "000001"),
                _record("T0000001", "1201", "000001", "reversal"),
                _record("T0000001", "1202", "000001"),  # same TID and STAN, other day
                _record("T0000002", "1201", "000001"),
                _record("T'000003", "1201", "0000\"2"),  # quotes survive the JSON
            ])
            wanted = [("T0000001", "1201", "000001"), ("T'000003", "1201", "0000\"2"),
                      ("T0000009", "1201", "000001"), ("T0000001", "1201", "000001")]
            rows = _BY_KEY.rows(connection, {"keys": json_list(wanted)})
            assert sorted(row[:4] for row in rows) == [
                ("T'000003", "1201", "0000\"2", "request"),
                ("T0000001", "1201", "000001", "request"),
                ("T0000001", "1201", "000001", "reversal"),
            ]
            # the DateTime column comes back as SQLAlchemy would give it, on both engines
            assert all(isinstance(row[4], datetime) for row in rows)
            assert _BY_KEY.rows(connection, {"keys": json_list([])}) == []
            by_tid = _BY_TID.rows(connection, {"tids": json_list(["T0000002", "T0000002"])})
            assert by_tid == [("000001",)]
    finally:
        db.dispose()


@pytest.mark.parametrize("statement", [store._TERMINALS, store._CARDS, store._RECORDS],
                         ids=["terminals", "cards", "records"])
def test_sqlite_run_reads_probe_an_index(tmp_path: object, statement: Prepared) -> None:
    db = open_database(f"sqlite:///{tmp_path}/plan.db")
    try:
        with db.engine.connect() as connection:
            sql = statement._for(connection.dialect).sql
            arguments = ("[]",) + ("2026-12-01 00:00:00",) * (sql.count("?") - 1)
            plan = [row[3] for row in connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {sql}", arguments)]
    finally:
        db.dispose()
    scans = [step for step in plan if step.startswith("SCAN ") and "json_each" not in step]
    assert not scans, plan
    assert any(step.startswith("SEARCH ") and "INDEX" in step for step in plan), plan


def test_postgresql_run_reads_probe_an_index_in_the_generic_plan(pg_url: str) -> None:
    """psycopg prepares a statement run often, and PostgreSQL may then keep one
    generic plan: with a few thousand records and their statistics, the run's
    record lookup and a one-column list still probe the index (a semi-join on the
    list chose a sequential scan here, and the bench fell from 1,240 to 820/s as
    the day's records grew)."""
    db = open_database(pg_url)
    try:
        with db.transaction() as session:
            session.connection().execute(insert(RequestRecord), [
                _record(f"T{n % 32:07d}", "1201", f"{n:06d}") for n in range(5000)])
        with db.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE request_records")
            connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
            for name, statement in (("records", store._RECORDS),
                                    ("tids", _BY_TID)):
                sql = statement._for(connection.dialect).sql
                parameter = "%(keys)s" if "%(keys)s" in sql else "%(tids)s"
                sql = sql.replace("%(cutoff)s", "now() - interval '7 days'")
                connection.exec_driver_sql(
                    f"PREPARE {name}_plan(text) AS {sql.replace(parameter, '$1')}")
                plan = "\n".join(row[0] for row in connection.exec_driver_sql(
                    f"EXPLAIN EXECUTE {name}_plan('[]')"))
                assert "Seq Scan on request_records" not in plan, plan
                assert "Index" in plan, plan
    finally:
        db.dispose()


def _generic_plan(connection: Any, name: str, sql: str) -> str:
    """``sql`` (psycopg's ``%(name)s`` placeholders) prepared with text, timestamp and
    integer parameters and explained as PostgreSQL's generic plan, empty lists given."""
    kinds = {"cutoff": "timestamptz", "since": "timestamptz", "cap": "integer"}
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
    for number, parameter in enumerate(names, start=1):
        sql = sql.replace(f"%({parameter})s", f"${number}")
    types = ", ".join(kinds.get(parameter, "text") for parameter in names)
    values = ", ".join({"timestamptz": "now()", "integer": "21"}.get(
        kinds.get(parameter, "text"), "'[]'") for parameter in names)
    connection.exec_driver_sql(f"PREPARE {name}({types}) AS {sql}")
    return "\n".join(row[0] for row in connection.exec_driver_sql(
        f"EXPLAIN EXECUTE {name}({values})"))


#: Every read of a host batch on PostgreSQL, with the tables it must only probe.
_BATCH_READS = [
    ("terminals", store._TERMINALS, ("terminals", "ewarongs")),
    ("cards", store._CARDS_LOCKING_WALLETS, ("cards", "kpm", "accounts")),
    ("records", store._RECORDS, ("request_records",)),
    ("seen", rules_store._SEEN, ("cards", "terminal_cards")),
    ("shelves", rules_store._SHELVES, ("terminals", "ewarongs", "stock")),
    ("windows", rules_store._WINDOWS, ("terminal_cards",)),
]


def test_postgresql_batch_reads_never_scan_a_table(pg_url: str) -> None:
    """Each batch read's generic plan probes an index per key, with thousands of cards,
    hundreds of terminals and e-warongs and their statistics: a plain join of the JSON
    list hashed the whole of ``cards`` and ``terminal_cards`` (the seen-cards read,
    1.2 ms of server time per batch at 10,000 cards, growing with them) or of
    ``ewarongs`` (the terminals read), pg_stat_statements showed."""
    db = open_database(pg_url)
    world = build_world(kpm_count=3000, terminal_count=1000)
    try:
        seed_database(db, Keyring.from_settings(Settings(database_url=pg_url)), world)
        with db.transaction() as session:
            connection = session.connection()
            tids = [tid for (tid,) in connection.execute(select(TerminalRow.tid))]
            card_ids = [card_id for (card_id,) in connection.execute(select(CardRow.id))]
            connection.execute(insert(TerminalCard), [  # six cards seen per terminal
                {"tid": tid, "card_id": card_ids[(6 * i + j) % len(card_ids)],
                 "last_at": datetime(2026, 12, 1, 9, 30, tzinfo=UTC)}
                for i, tid in enumerate(tids) for j in range(6)])
            connection.execute(insert(RequestRecord), [
                _record(tids[n % len(tids)], "1201", f"{n:06d}") for n in range(3000)])
        with db.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
            connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
            plans = {name: _generic_plan(connection, f"{name}_plan",
                                         statement._for(connection.dialect).sql)
                     for name, statement, _ in _BATCH_READS}
        scanned = {name: [table for table in tables if f"Seq Scan on {table}" in plans[name]]
                   for name, _, tables in _BATCH_READS}
        assert not any(scanned.values()), (scanned, plans)
        assert all("Index" in plan for plan in plans.values()), plans
    finally:
        db.dispose()
