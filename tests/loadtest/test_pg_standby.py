"""PostgreSQL that fails over (loadtest/pg_standby.py, docs/SCALING.md): the switch's
database layer on the pair's multi-host URL, the in-flight commit at the primary's
death, the launcher, and the ``pg-failover`` chaos scenario (CI version).

Needs the PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup): without them
these tests skip with the reason, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from loadtest.pg_standby import STANDBY, StandbyPair, multi_host_url, unavailable
from switch.db.schema import open_database
from tests.loadtest.test_chaos import ci_run, require

ROOT = Path(__file__).resolve().parents[2]
#: A transaction on a dead primary must fail, not hang: well under the EDC time-out.
FAIL_FAST_S = 3.0


def require_pg() -> None:
    require(unavailable())


def test_the_multi_host_url_reaches_libpq_as_host_and_port_lists() -> None:
    url = multi_host_url([5001, 5002], "bpnt")
    engine = create_engine(url)
    _args, kwargs = engine.dialect.create_connect_args(engine.url)
    assert kwargs["host"] == "127.0.0.1,127.0.0.1" and kwargs["port"] == "5001,5002"
    assert kwargs["target_session_attrs"] == "read-write" and kwargs["dbname"] == "bpnt"
    # a peer that died without a word (its machine) is given up in seconds
    assert kwargs["tcp_user_timeout"] == "5000" and kwargs["keepalives_idle"] == "5"
    engine.dispose()


@pytest.mark.slow
def test_the_switch_database_follows_the_promotion() -> None:
    """The schema code migrates through the multi-host URL; with the primary killed a
    transaction fails at once (the standby refuses writes: read-only); once the
    standby is promoted the same Database (its pool) writes again, no restart, and
    what was committed before the kill is there."""
    require_pg()
    with StandbyPair(fsync=False) as pair:
        assert (STANDBY, "streaming", "sync") in pair.replication()
        db = open_database(pair.url)  # alembic upgrade head, through libpq's host list
        try:
            with db.transaction() as session:
                session.execute(text("CREATE TABLE probe (n int)"))
                session.execute(text("INSERT INTO probe VALUES (1)"))
                assert session.execute(text("SELECT inet_server_port()")).scalar() == \
                    pair.primary.port
            pair.kill_primary()
            started = time.monotonic()
            with pytest.raises(OperationalError), db.transaction() as session:
                session.execute(text("INSERT INTO probe VALUES (2)"))
            assert time.monotonic() - started < FAIL_FAST_S
            pair.promote()
            with db.transaction() as session:
                assert session.execute(text("SELECT inet_server_port()")).scalar() == \
                    pair.standby.port
                assert session.execute(text("SELECT array_agg(n) FROM probe")).scalar() == [1]
                session.execute(text("INSERT INTO probe VALUES (3)"))
            assert pair.writable_port() == pair.standby.port
        finally:
            db.dispose()


@pytest.mark.slow
def test_a_commit_in_flight_at_the_kill_raises_it_never_returns() -> None:
    """The hard case: the standby holds back its acknowledgement, so the COMMIT waits
    on the primary; the primary dies: the COMMIT raises (the switch then closes without
    an answer, HOST_SPEC §5), it does not come back as a success."""
    require_pg()
    with StandbyPair(fsync=False) as pair:
        db = open_database(pair.url)
        outcome: list[BaseException | str] = []
        try:
            with db.transaction() as session:
                session.execute(text("CREATE TABLE probe (n int)"))

            def commit() -> None:
                try:
                    with db.transaction() as session:
                        session.execute(text("INSERT INTO probe VALUES (7)"))
                    outcome.append("committed")
                except BaseException as exc:  # noqa: BLE001 - what it raised is the point
                    outcome.append(exc)

            pair.hold_standby()
            worker = threading.Thread(target=commit)
            worker.start()
            time.sleep(0.5)
            assert not outcome, "the commit returned without the standby's acknowledgement"
            pair.kill_primary()
            pair.release_standby()
            worker.join(FAIL_FAST_S)
            assert not worker.is_alive()
            assert len(outcome) == 1 and isinstance(outcome[0], OperationalError), outcome
            pair.promote()
            with db.transaction() as session:  # there or not: either way, never told "done"
                assert session.execute(text("SELECT count(*) FROM probe")).scalar() in (0, 1)
        finally:
            db.dispose()


@pytest.mark.slow
def test_the_launcher_prints_the_url_fails_over_and_removes_its_clusters() -> None:
    require_pg()
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.pg_standby", "--duration-s", "4",
         "--failover-after-s", "1", "--no-fsync"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "BPNT_DATABASE_URL='postgresql+psycopg://postgres@/bpnt?host=127.0.0.1:" in out
    assert "target_session_attrs=read-write" in out and "bpnt_standby/streaming/sync" in out
    assert "standby promoted" in out and "--duration-s is over" in out
    data_dir = out.split("(", 1)[1].split(")", 1)[0]  # the primary's data directory
    assert not Path(data_dir).exists()


@pytest.mark.slow
def test_pg_failover_ci(tmp_path: Path) -> None:
    require_pg()
    result, log = ci_run(tmp_path, "pg-failover", engine="postgresql")
    assert result.ok, log
    assert result.verdict.ok, log  # the money invariant and the terminal history
    fig = result.figures
    assert len(fig.windows) == 1
    assert fig.windows[0].first_91_s is not None and fig.windows[0].first_91_s <= 2.0, log
    assert fig.windows[0].recovery_s is not None and fig.windows[0].recovery_s <= 5.0, log
    assert fig.by_rc.get("91 unsigned", 0) == 0, log
    report = (result.run_dir / "report.md").read_text(encoding="utf-8")
    assert "## The failover" in report and "Purchases in flight at the kill" in report
